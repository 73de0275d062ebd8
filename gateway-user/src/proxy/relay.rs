//! Relay: copy bytes both ways between a client and the upstream the dialer opened.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::audit::{Side, Sided};
use crate::detect::Prefixed;
use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::upstream::EgressStream;

/// Why a relay ended badly (bytes already moved are still counted).
#[derive(Debug, thiserror::Error)]
#[error("relay: {detail}")]
pub struct RelayError {
    /// The side that failed: the upstream when writing to it failed, else the relay itself
    /// (a copy error does not say which socket broke).
    pub side: Side,
    /// Bytes from the sandbox so far.
    pub up: u64,
    /// Bytes to the sandbox so far.
    pub down: u64,
    /// What happened.
    pub detail: String,
}

impl Sided for RelayError {
    fn side(&self) -> Side {
        self.side
    }
}

/// A client stream the relay can hand to `splice(2)` when it is a bare TCP socket.
pub trait RelayStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket itself, when nothing (TLS, HTTP framing) sits on top of it.
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl RelayStream for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl RelayStream for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}

impl RelayStream for EgressStream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Either::Left(tcp) => Some(tcp),
            Either::Right(_) => None,
        }
    }
}

/// A socket with bytes still to replay is spliced only once they are all replayed.
impl RelayStream for Prefixed<TcpStream> {
    fn tcp(&self) -> Option<&TcpStream> {
        self.prefix().is_empty().then(|| self.inner())
    }
}

/// Relays `client` (whose peeked bytes are replayed first) and `upstream` until both sides
/// are done; returns (bytes up, bytes down). A bare TCP client is spliced in the kernel;
/// anything else (or a tunnel through an upstream proxy) is copied through userspace
/// buffers. On error the bytes moved so far are in the error.
pub async fn relay<IO: RelayStream>(
    client: Prefixed<IO>,
    mut upstream: EgressStream,
) -> Result<(u64, u64), RelayError> {
    let (prefix, mut client) = client.into_parts();
    let sent = prefix.len() as u64;
    if let Err(e) = upstream.write_all(&prefix).await {
        return Err(RelayError {
            side: Side::Upstream,
            up: 0,
            down: 0,
            detail: format!("upstream: write: {e}"),
        });
    }
    let (Some(tcp), Some(upstream_tcp)) = (client.tcp(), upstream.tcp()) else {
        return copy(&mut client, &mut upstream)
            .await
            .map(|(up, down)| (up + sent, down))
            .map_err(|e| RelayError {
                up: e.up + sent,
                ..e
            });
    };
    match super::splice::relay(tcp, upstream_tcp).await {
        (moved, None) => Ok((moved.a_to_b + sent, moved.b_to_a)),
        (moved, Some(e)) => Err(RelayError {
            side: Side::Gateway,
            up: moved.a_to_b + sent,
            down: moved.b_to_a,
            detail: e.to_string(),
        }),
    }
}

/// Copies both ways through tokio's 8 KiB buffers (small: an idle tunnel costs little)
/// until both sides are done; returns (bytes up, bytes down). On error the bytes moved so
/// far are in the error.
pub async fn copy<A, B>(client: &mut A, upstream: &mut B) -> Result<(u64, u64), RelayError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Counting {
        inner: client,
        read: 0,
    };
    let mut upstream = Counting {
        inner: upstream,
        read: 0,
    };
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok(_) => Ok((client.read, upstream.read)),
        Err(e) => Err(RelayError {
            side: Side::Gateway,
            up: client.read,
            down: upstream.read,
            detail: e.to_string(),
        }),
    }
}

/// Counts the bytes read through it; writes pass straight on (vectored ones included).
struct Counting<S> {
    inner: S,
    read: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        poll
    }
}

crate::io::write_through!(Counting, inner);
