//! Zero-copy relay between two TCP sockets: `splice(2)` through a pipe per direction, so
//! passthrough and opaque bytes never enter userspace.
//!
//! Each direction moves what the source socket has into its pipe, then drains the pipe into
//! the destination socket before reading again. Because the pipe is always empty when the
//! source is read, `EAGAIN` there means the socket is dry; because the pipe holds bytes when
//! the destination is written, `EAGAIN` there means the socket is full. That keeps tokio's
//! readiness tracking exact without a userspace buffer.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes asked of one `splice` call: the default pipe capacity (16 pages).
const CHUNK: usize = 64 * 1024;

/// Bytes moved each way: (`a` → `b`, `b` → `a`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// From `a` to `b`.
    pub a_to_b: u64,
    /// From `b` to `a`.
    pub b_to_a: u64,
}

/// Relays between `a` and `b` until both directions have ended. A direction ends at EOF on its
/// source, which is passed on as a write shutdown of its destination (half-close preserved).
///
/// On error the bytes moved so far come back with it; the other direction stops too.
pub async fn relay(a: &TcpStream, b: &TcpStream) -> (Moved, Option<io::Error>) {
    let mut moved = Moved::default();
    let result = tokio::try_join!(
        one_way(a, b, &mut moved.a_to_b),
        one_way(b, a, &mut moved.b_to_a)
    );
    (moved, result.err())
}

/// Moves bytes `from` → `to` until EOF on `from`, counting them in `moved`.
async fn one_way(from: &TcpStream, to: &TcpStream, moved: &mut u64) -> io::Result<()> {
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    loop {
        let filled = into_pipe(from, &pipe_in).await?;
        if filled == 0 {
            // Our side may already be gone (the peer reset): nothing left to tell it.
            let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
            return Ok(());
        }
        out_of_pipe(&pipe_out, to, filled).await?;
        *moved += filled as u64;
    }
}

/// Splices what `from` has (up to [`CHUNK`]) into the empty pipe; 0 means EOF.
async fn into_pipe(from: &TcpStream, pipe_in: &OwnedFd) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_io(Interest::READABLE, || spliced(from, pipe_in, CHUNK)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Splices all `len` bytes in the pipe out to `to`.
async fn out_of_pipe(pipe_out: &OwnedFd, to: &TcpStream, mut len: usize) -> io::Result<()> {
    while len > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || spliced(pipe_out, to, len)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => len -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn spliced(
    from: impl std::os::fd::AsFd,
    to: impl std::os::fd::AsFd,
    len: usize,
) -> io::Result<usize> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        match splice(&from, None, &to, None, len, flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (dialed.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn moves_bytes_both_ways_and_passes_half_close_on() {
        let (mut client, proxy_a) = pair().await;
        let (proxy_b, mut server) = pair().await;
        let relay = tokio::spawn(async move { relay(&proxy_a, &proxy_b).await });

        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = up.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&up).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(
            got == expected,
            "upstream got {} bytes, not the same",
            got.len()
        );
        server.write_all(b"done after half-close").await.unwrap();
        server.shutdown().await.unwrap();

        assert_eq!(writer.await.unwrap(), b"done after half-close");
        let (moved, error) = relay.await.unwrap();
        assert!(error.is_none(), "{error:?}");
        assert_eq!(moved.a_to_b, 3_000_000);
        assert_eq!(moved.b_to_a, 21);
    }

    #[tokio::test]
    async fn a_reset_ends_the_relay_with_the_bytes_counted() {
        let (mut client, proxy_a) = pair().await;
        let (proxy_b, server) = pair().await;
        let relay = tokio::spawn(async move { relay(&proxy_a, &proxy_b).await });
        client.write_all(b"hello").await.unwrap();
        let mut server = server;
        let mut five = [0u8; 5];
        server.read_exact(&mut five).await.unwrap();
        socket2::SockRef::from(&server)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(server);
        client.write_all(b"more").await.ok();
        let (moved, _) = tokio::time::timeout(std::time::Duration::from_secs(5), relay)
            .await
            .expect("the relay ends after a reset")
            .unwrap();
        assert!(moved.a_to_b >= 5, "{moved:?}");
    }
}
