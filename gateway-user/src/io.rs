//! Stream wrappers that change how a stream is read and leave writing to it alone.
//!
//! [`write_through!`] gives such a wrapper its `AsyncWrite` implementation, written once
//! here: writes, vectored writes, flushes and shutdowns go to the wrapped stream, and
//! `is_write_vectored` is the wrapped stream's answer. The wrappers ([`Prefixed`] replaying
//! peeked bytes, the HTTP/1 framing sniffer, the byte counters of WebSocket tunnels and of
//! relays) then only implement `AsyncRead`.
//!
//! [`Prefixed`]: crate::detect::Prefixed

/// Implements `tokio::io::AsyncWrite` for `$wrapper<S>` by forwarding every method to its
/// field `$field: S`, for any `S: AsyncWrite + Unpin` (the wrapper must be `Unpin` then).
///
/// ```ignore
/// struct Counting<T> { io: T, read: u64 }
/// crate::io::write_through!(Counting, io);
/// ```
macro_rules! write_through {
    ($wrapper:ident, $field:ident) => {
        impl<S> ::tokio::io::AsyncWrite for $wrapper<S>
        where
            S: ::tokio::io::AsyncWrite + ::std::marker::Unpin,
        {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_flush(cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_shutdown(cx)
            }
        }
    };
}

pub(crate) use write_through;

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncWrite, AsyncWriteExt};

    /// Reads nothing special; writes go through.
    struct Through<S> {
        inner: S,
    }
    write_through!(Through, inner);

    /// A writer that takes one byte per call, not vectored, and records flush and shutdown.
    #[derive(Default)]
    struct Trickle {
        bytes: Vec<u8>,
        flushed: bool,
        shut: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.get_mut().bytes.extend(buf.first());
            Poll::Ready(Ok(buf.len().min(1)))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.get_mut().flushed = true;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn vectored_writes_reach_a_vectored_stream_whole() {
        let mut through = Through { inner: Vec::new() };
        assert!(through.is_write_vectored());
        let parts = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        assert_eq!(through.write_vectored(&parts).await.unwrap(), 4);
        assert_eq!(through.inner, b"abcd");
    }

    #[tokio::test]
    async fn writes_flushes_and_shutdowns_reach_the_inner_stream() {
        let mut through = Through {
            inner: Trickle::default(),
        };
        assert!(!through.is_write_vectored());
        through.write_all(b"xyz").await.unwrap();
        through.flush().await.unwrap();
        through.shutdown().await.unwrap();
        assert_eq!(through.inner.bytes, b"xyz");
        assert!(through.inner.flushed && through.inner.shut);
    }
}
