//! Replays bytes already read from a stream before reading the stream itself.
//!
//! Detection has to read the first bytes of a connection to classify it; wrapping the
//! stream in [`Prefixed`] hands it on (to a TLS acceptor, an HTTP server or a plain
//! copy) with nothing lost.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};

/// A stream whose reads return `prefix` first, then whatever `inner` yields.
/// Writes, flushes and shutdowns go straight to `inner`.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Wraps `inner` so that its next reads return `prefix` first.
    ///
    /// An empty `prefix` is not kept: an empty `Bytes` may still own its whole buffer (hyper
    /// hands over an upgraded connection's drained 8 KiB read buffer that way), which would
    /// otherwise stay allocated for as long as the connection.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        let prefix = if prefix.is_empty() {
            Bytes::new()
        } else {
            prefix
        };
        Self { prefix, inner }
    }

    /// The bytes not yet replayed.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The wrapped stream.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably (e.g. to set socket options).
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps into the bytes not yet replayed and the stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            // Release the peek buffer now, not when the connection ends.
            this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

crate::io::write_through!(Prefixed, inner);
