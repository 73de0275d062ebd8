//! Idle HTTP/1.1 connections give hyper's buffers back.
//!
//! hyper's HTTP/1 server holds an 8 KiB read buffer, an 8 KiB write buffer, a cached header
//! map and its connection state for as long as a connection is open, also while a kept-alive
//! connection waits for its next request: more than half of what an idle intercepted
//! connection costs. So a connection idle for [`PARK_AFTER`] is *parked*: its hyper
//! connection ends without the stream being shut down (an idle HTTP/1.1 connection has no
//! exchange in flight to lose), the stream alone waits for the next request's first bytes,
//! and a new hyper connection then serves them. (HAProxy and nginx likewise hold buffers
//! only while data moves.)
//!
//! Idle means all three: every request that arrived has been answered (its audit guard was
//! dropped when its response ended), all hyper wrote was flushed, and nothing was read or
//! written for a whole check period. Bytes hyper had read but not parsed (the start of the
//! next request head) are replayed to the next hyper connection.
//!
//! While a request is in flight (a long download, an event stream, an upload) nothing is
//! checked: the next answer starts the quiet period again.
//!
//! # Security
//! Parking gives a client no way to hold a connection for ever: a parked connection waits
//! [`IDLE_LIMIT`] for the first bytes of its next request, and hyper's head read timeout
//! then bounds the head (nginx's `keepalive_timeout` and `client_header_timeout` make the
//! same two limits). A connection resumed in the middle of a head parks again only after
//! answering it, so a client trickling a head cannot have that timeout re-armed at every
//! park. The stream keeps its framing sniffer across parks, so the framing check sees every
//! byte exactly once, in order.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::body::{BoxBody, ConnCounters};
use crate::detect::Prefixed;

/// How long a connection must be quiet before it is parked (checked every period, so a
/// connection parks between one and two periods after its last byte). Busy keep-alive
/// connections, whose next request follows within it, are never parked.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(100);
/// How long a parked connection waits for its next request before it is closed (hyper's
/// header read timeout would have closed it then too).
pub(super) const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Limit on sending close_notify and FIN to a parked connection that is being closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of the next request read while parked (the rest stays in the stream).
const WAKE_READ: usize = 2048;

/// Serves HTTP/1.1 on `io` with `builder` and `service` until the client closes (or the
/// connection is upgraded), parking it whenever it is idle for `park_after`; `counters`
/// tell when every request has been answered, and count the parks. Returns why the
/// connection ended, when that was an error.
///
/// The connection starts parked: a client that connects ahead of its first request (a
/// browser's preconnect) holds no HTTP buffers either.
pub(super) async fn serve_http1<IO, S>(
    io: IO,
    builder: &http1::Builder,
    service: S,
    counters: &ConnCounters,
    park_after: Duration,
) -> Option<String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = BoxBody> + Clone + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let watch = Arc::new(Watch::default());
    let (mut inner, mut prefix) = (io, Bytes::new());
    let check = tokio::time::sleep(park_after);
    tokio::pin!(check);
    loop {
        if prefix.is_empty() {
            match tokio::time::timeout(IDLE_LIMIT, first_bytes(&mut inner)).await {
                Ok(Ok(Some(bytes))) => prefix = bytes,
                // The client closed (a reset or a TLS stream ended without close_notify
                // included: hyper too takes any end between requests for a clean close), or
                // stayed idle too long: closed as hyper would.
                Ok(Ok(None) | Err(_)) | Err(_) => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, inner.shutdown()).await;
                    return None;
                }
            }
        }
        let watched = Watched {
            io: Prefixed::new(prefix, inner),
            watch: watch.clone(),
        };
        // Boxed: it is what parking frees.
        let mut conn = Box::pin(
            builder
                .serve_connection(TokioIo::new(watched), service.clone())
                .with_upgrades(),
        );
        // hyper only ends a connection quietly once it has answered a request on it (until
        // then it would finish the exchange and close): so a connection resumed in the
        // middle of a head parks again only after answering it, and that head's read
        // timeout is armed once, not again at every park.
        let answered_before = counters.answered.load(Ordering::Relaxed);
        let mut seen = watch.activity();
        check.as_mut().reset(Instant::now() + park_after);
        // While a request is in flight (a long download, an event stream) the clock is not
        // checked: the next answer restarts it.
        let mut in_flight = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => return result.err().map(hyper_error),
                () = counters.answer.notified(), if in_flight => {
                    in_flight = false;
                    seen = watch.activity();
                    check.as_mut().reset(Instant::now() + park_after);
                }
                () = check.as_mut(), if !in_flight => {
                    let now = watch.activity();
                    let answered = counters.answered.load(Ordering::Relaxed);
                    if answered == answered_before
                        || answered != counters.requests.load(Ordering::Relaxed)
                    {
                        in_flight = true;
                    } else if now == seen && !watch.unflushed.load(Ordering::Relaxed) {
                        break;
                    } else {
                        seen = now;
                        check.as_mut().reset(Instant::now() + park_after);
                    }
                }
            }
        }
        // Park: end hyper's connection, keeping the stream open.
        watch.parking.store(true, Ordering::Relaxed);
        conn.as_mut().graceful_shutdown();
        match std::future::poll_fn(|cx| Poll::Ready(conn.as_mut().poll(cx))).await {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Some(hyper_error(error)),
            Poll::Pending => {
                // hyper was not idle after all: it finishes the exchange and closes.
                watch.parking.store(false, Ordering::Relaxed);
                return conn.await.err().map(hyper_error);
            }
        }
        watch.parking.store(false, Ordering::Relaxed);
        let Some(parts) = Pin::into_inner(conn).into_parts() else {
            return None; // upgraded: the tunnel has the stream
        };
        counters.parks.fetch_add(1, Ordering::Relaxed);
        let http1::Parts { io, read_buf, .. } = parts;
        let (unread, stream) = io.into_inner().io.into_parts();
        prefix = join(&read_buf, unread);
        inner = stream;
    }
}

/// The next bytes the client sends (up to [`WAKE_READ`]); `None` when it closed instead.
async fn first_bytes<S: AsyncRead + Unpin>(io: &mut S) -> std::io::Result<Option<Bytes>> {
    std::future::poll_fn(|cx| {
        // On the stack of this poll only: the parked connection holds no buffer.
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); WAKE_READ];
        let mut buf = ReadBuf::uninit(&mut space);
        match Pin::new(&mut *io).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Ok(None)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(Bytes::copy_from_slice(buf.filled())))),
        }
    })
    .await
}

/// hyper's unparsed bytes, then what it had not yet read of the replayed prefix, copied out
/// of hyper's read buffer so that buffer is freed.
fn join(read: &[u8], unread: Bytes) -> Bytes {
    if read.is_empty() {
        return unread;
    }
    let mut joined = BytesMut::with_capacity(read.len() + unread.len());
    joined.extend_from_slice(read);
    joined.extend_from_slice(&unread);
    joined.freeze()
}

/// What the serving loop sees of the stream hyper holds.
#[derive(Debug, Default)]
struct Watch {
    /// Bumped by every read and write: unchanged over a check period means no traffic.
    activity: AtomicU64,
    /// Something was written and not yet flushed (by hyper, or by TLS under it).
    unflushed: AtomicBool,
    /// The connection is being parked: hyper's shutdown must leave the stream open.
    parking: AtomicBool,
}

impl Watch {
    fn activity(&self) -> u64 {
        self.activity.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }
}

/// The stream under hyper: counts activity, tracks flushes, and ignores hyper's shutdown
/// while parking.
#[derive(Debug)]
struct Watched<S> {
    io: S,
    watch: Arc<Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if polled.is_ready() {
            this.watch.bump();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.wrote();
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.wrote();
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.watch.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.watch.parking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<S> Watched<S> {
    fn wrote(&self) {
        // Set before the write: a write that returns Pending has bytes waiting too.
        self.watch.unflushed.store(true, Ordering::Relaxed);
        self.watch.bump();
    }
}

/// How a connection error of hyper's reads in the connection's record.
pub(super) fn hyper_error(error: hyper::Error) -> String {
    format!("downstream: HTTP connection error: {error}")
}

#[cfg(test)]
#[path = "park_tests.rs"]
mod tests;
