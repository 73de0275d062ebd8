//! Binding inside a namespace, and the per-server thread + runtime + accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::UpstreamError;
use crate::addrs;
use crate::netlab::in_netns;

/// Binds a non-blocking std listener on `addr` inside the namespace at `netns`.
///
/// # Security
/// Refuses addresses outside the test ranges (192.0.2.0/24 in particular).
pub(crate) fn bind_in(
    netns: &Path,
    addr: SocketAddr,
) -> Result<std::net::TcpListener, UpstreamError> {
    if !addrs::is_test_address(addr.ip()) {
        return Err(UpstreamError::NotTestAddress(addr.ip()));
    }
    let bind = || -> std::io::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    in_netns(netns, bind)?.map_err(|source| UpstreamError::Bind { addr, source })
}

/// A server's own thread and runtime; dropping it stops the accept loop, drops every
/// connection task and joins the thread.
#[derive(Debug)]
pub(crate) struct ServerThread {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Serves `listener` on a new thread with a current-thread runtime, running `handler` as a
/// task per accepted connection.
pub(crate) fn spawn<H, F>(
    listener: std::net::TcpListener,
    handler: H,
) -> Result<ServerThread, UpstreamError>
where
    H: Fn(tokio::net::TcpStream, SocketAddr) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(UpstreamError::Runtime)?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(UpstreamError::Runtime)?
    };
    let (tx, mut rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sl-upstream".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, peer)) => {
                                // Streams (SSE) must not wait on Nagle + delayed ACK.
                                let _ = stream.set_nodelay(true);
                                tokio::spawn(handler(stream, peer));
                            }
                            Err(err) => {
                                eprintln!("upstream: accept: {err}");
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        },
                    }
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(UpstreamError::Runtime)?;
    Ok(ServerThread {
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("upstream: server thread panicked");
        }
    }
}
