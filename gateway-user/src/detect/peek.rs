//! The I/O half of detection: read, classify, repeat, within limits.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Detection, Limits, Outcome, classify};

/// Reads bytes the client sends first, up to `limits.max_bytes` and until
/// `limits.deadline`, re-running the parsers after each read until one gives a verdict.
///
/// Returns as soon as the bytes so far decide the protocol: a client that sends a
/// ClientHello and waits is not kept waiting for the deadline. Everything read is in
/// [`Detection::bytes`]; the stream must be wrapped with [`Detection::replay`] before
/// anyone else reads from it.
///
/// # Security
///
/// Bounded in memory (`max_bytes`) and time (`deadline`). Silence gives
/// [`Outcome::Timeout`], a head too big gives [`Outcome::TooLarge`], an early close
/// gives [`Outcome::Closed`]: none of them carries a host, so none can be mistaken for
/// an allowed destination.
pub async fn detect<S>(stream: &mut S, limits: Limits) -> Detection
where
    S: AsyncRead + Unpin + ?Sized,
{
    let mut buf = BytesMut::new();
    let read = read_until_verdict(stream, &mut buf, limits.max_bytes);
    let outcome = tokio::time::timeout(limits.deadline, read)
        .await
        .unwrap_or(Outcome::Timeout);
    Detection {
        bytes: buf.freeze(),
        outcome,
    }
}

/// Bytes asked for per read; a hello rarely needs a second one.
const READ_CHUNK: usize = 4096;

/// The read/classify loop; cancel-safe, so the timeout can drop it between reads
/// without losing bytes already in `buf`.
async fn read_until_verdict<S>(stream: &mut S, buf: &mut BytesMut, max_bytes: usize) -> Outcome
where
    S: AsyncRead + Unpin + ?Sized,
{
    loop {
        if let Some(outcome) = classify(buf) {
            return outcome;
        }
        let room = max_bytes.saturating_sub(buf.len());
        if room == 0 {
            return Outcome::TooLarge;
        }
        buf.reserve(room.min(READ_CHUNK));
        match stream.read_buf(&mut (&mut *buf).limit(room)).await {
            Ok(0) => return Outcome::Closed,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Outcome::ReadFailed(error.kind()),
        }
    }
}
