//! Raw TCP fakes for non-HTTP tests: an echo server, a first-bytes recorder, and an address
//! where nothing listens.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{UpstreamError, server};
use crate::netlab::NetLab;

/// How long the recorder waits for more bytes before it considers the client done.
const RECORD_IDLE: Duration = Duration::from_secs(1);
/// Echo mode keeps at most this many leading bytes in [`RecordedConnection::first_bytes`].
const ECHO_KEEP: usize = 64 * 1024;

/// A TCP server that echoes every byte back (first 64 KiB recorded).
pub fn tcp_echo() -> TcpUpstream {
    TcpUpstream {
        mode: Mode::Echo,
        banner: None,
        reply: None,
    }
}

/// A TCP server that records the first `max_bytes` a client sends (stopping early at EOF or
/// after 1 s without data), then writes [`TcpUpstream::reply`] if set and closes.
pub fn tcp_recorder(max_bytes: usize) -> TcpUpstream {
    TcpUpstream {
        mode: Mode::Record { max: max_bytes },
        banner: None,
        reply: None,
    }
}

/// An `ip:port` in the lab's net namespace where nothing listens: connects get a RST.
/// `ip` must be one of the lab's host addresses (e.g. [`crate::addrs::HOST_C`]).
///
/// The port stays reserved by a bound, never-listening socket until the returned value drops.
/// (A listener that is bound and closed again is not enough: a `fork` elsewhere in the test
/// process can keep it listening for a moment and complete a handshake.)
pub fn refusing(lab: &NetLab, ip: IpAddr) -> Result<Refusing, UpstreamError> {
    let want = SocketAddr::new(ip, 0);
    if !crate::addrs::is_test_address(ip) {
        return Err(UpstreamError::NotTestAddress(ip));
    }
    let reserve = || -> std::io::Result<(socket2::Socket, SocketAddr)> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(want),
            socket2::Type::STREAM,
            None,
        )?;
        socket.bind(&want.into())?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("not an inet socket"))?;
        Ok((socket, addr))
    };
    let (socket, addr) = lab
        .in_net(reserve)?
        .map_err(|source| UpstreamError::Bind { addr: want, source })?;
    Ok(Refusing {
        addr,
        _reserved: socket,
    })
}

/// A reserved address with nothing listening; see [`refusing`].
#[must_use = "the port is released when this is dropped"]
#[derive(Debug)]
pub struct Refusing {
    addr: SocketAddr,
    _reserved: socket2::Socket,
}

impl Refusing {
    /// The address to connect to (and be refused).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Builder for a raw TCP fake; see [`tcp_echo`] and [`tcp_recorder`].
#[must_use = "a builder does nothing until `.start()`"]
#[derive(Debug, Clone)]
pub struct TcpUpstream {
    mode: Mode,
    banner: Option<Bytes>,
    reply: Option<Bytes>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Echo,
    Record { max: usize },
}

impl TcpUpstream {
    /// Bytes the server sends as soon as it accepts, before reading (server-first protocols
    /// such as SMTP or SSH).
    pub fn banner(mut self, bytes: impl Into<Bytes>) -> Self {
        self.banner = Some(bytes.into());
        self
    }

    /// Recorder only: bytes written after recording, just before closing.
    pub fn reply(mut self, bytes: impl Into<Bytes>) -> Self {
        self.reply = Some(bytes.into());
        self
    }

    /// Binds `addr` inside the lab's net namespace and starts serving.
    pub fn start(self, lab: &NetLab, addr: SocketAddr) -> Result<RunningTcp, UpstreamError> {
        self.start_in(&lab.net_ns_path(), addr)
    }

    /// Like [`start`](Self::start) but in any namespace.
    pub fn start_in(self, netns: &Path, addr: SocketAddr) -> Result<RunningTcp, UpstreamError> {
        let listener = server::bind_in(netns, addr)?;
        let addr = listener
            .local_addr()
            .map_err(|source| UpstreamError::Bind { addr, source })?;
        let log: Arc<Mutex<Vec<RecordedConnection>>> = Arc::default();
        let (config, handler_log) = (Arc::new(self), log.clone());
        let thread = server::spawn(listener, move |stream, peer| {
            serve(config.clone(), handler_log.clone(), stream, peer)
        })?;
        Ok(RunningTcp {
            addr,
            log,
            _thread: thread,
        })
    }
}

/// A running raw TCP fake; stops on drop.
#[must_use = "the server stops when this is dropped"]
#[derive(Debug)]
pub struct RunningTcp {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<RecordedConnection>>>,
    _thread: server::ServerThread,
}

/// One accepted connection as the fake saw it (updated live while it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedConnection {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Leading bytes received (all of them up to the recorder's max, 64 KiB for echo).
    pub first_bytes: Vec<u8>,
    /// Total bytes received.
    pub total_bytes: u64,
    /// The server has finished with the connection.
    pub closed: bool,
}

impl RunningTcp {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far, in order.
    pub fn connections(&self) -> Vec<RecordedConnection> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Blocks until `n` connections are recorded and closed, or `timeout` passes; returns
    /// what is recorded either way.
    pub fn wait_closed(&self, n: usize, timeout: Duration) -> Vec<RecordedConnection> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.connections();
            if (seen.len() >= n && seen.iter().all(|c| c.closed)) || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn serve(
    config: Arc<TcpUpstream>,
    log: Arc<Mutex<Vec<RecordedConnection>>>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let index = {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push(RecordedConnection {
            peer,
            first_bytes: Vec::new(),
            total_bytes: 0,
            closed: false,
        });
        log.len() - 1
    };
    let update = |data: &[u8], keep: usize| {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = log.get_mut(index) {
            let room = keep.saturating_sub(conn.first_bytes.len());
            conn.first_bytes
                .extend_from_slice(&data[..room.min(data.len())]);
            conn.total_bytes += data.len() as u64;
        }
    };
    let mut ok = match &config.banner {
        Some(banner) => stream.write_all(banner).await.is_ok(),
        None => true,
    };
    let mut buf = vec![0u8; 16 * 1024];
    match config.mode {
        Mode::Echo => {
            while ok {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        update(&buf[..n], ECHO_KEEP);
                        ok = stream.write_all(&buf[..n]).await.is_ok();
                    }
                }
            }
        }
        Mode::Record { max } => {
            let mut seen = 0;
            while ok && seen < max {
                match tokio::time::timeout(RECORD_IDLE, stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {
                        update(&buf[..n], max);
                        seen += n;
                    }
                    _ => break,
                }
            }
            if let (true, Some(reply)) = (ok, &config.reply) {
                let _ = stream.write_all(reply).await;
            }
        }
    }
    let _ = stream.shutdown().await;
    if let Some(conn) = log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(index)
    {
        conn.closed = true;
    }
}
