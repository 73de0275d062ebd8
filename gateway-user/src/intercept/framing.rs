//! HTTP/1 request framing as it arrived on the wire, before hyper normalises it.
//!
//! hyper accepts a request with both Content-Length and Transfer-Encoding (dropping the
//! length), which hides request-smuggling attempts from the handler. [`Sniffer`] watches
//! the bytes hyper reads, follows request heads and body framing with [`Tracker`] (a pure
//! state machine), and queues one verdict per request head for the handler to pop.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::checks::CheckError;

/// Longest request head followed (hyper's default read buffer limit is about 400 KiB).
const MAX_HEAD: usize = 512 * 1024;
/// Longest chunk-size or trailer line followed.
const MAX_LINE: usize = 8 * 1024;

/// Verdicts on request heads, in arrival order.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    queue: Mutex<VecDeque<Result<(), CheckError>>>,
}

impl Verdicts {
    /// The verdict on the next request head; `None` if the tracker stopped following the
    /// stream (after an upgrade request).
    pub(super) fn next(&self) -> Option<Result<(), CheckError>> {
        self.lock().pop_front()
    }

    fn push(&self, verdict: Result<(), CheckError>) {
        self.lock().push_back(verdict);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Result<(), CheckError>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Passes reads and writes through, feeding every byte read to a [`Tracker`].
#[derive(Debug)]
pub(super) struct Sniffer<IO> {
    io: IO,
    tracker: Tracker,
    verdicts: Arc<Verdicts>,
}

impl<IO> Sniffer<IO> {
    pub(super) fn new(io: IO, verdicts: Arc<Verdicts>) -> Self {
        Sniffer {
            io,
            tracker: Tracker::default(),
            verdicts,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Sniffer<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            for verdict in this.tracker.feed(&buf.filled()[before..]) {
                this.verdicts.push(verdict);
            }
        }
        polled
    }
}

crate::io::write_through!(Sniffer, io);

/// Where the tracker is in the request stream.
#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Fixed(u64),
    /// Reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping chunk data, then its CRLF (the `u64` counts both).
    ChunkData(u64),
    /// Reading trailer lines until an empty one.
    Trailers(Vec<u8>),
    /// No longer following (upgrade, CONNECT, or something hyper will reject anyway).
    Stopped,
}

/// Follows HTTP/1 request heads and body framing over a byte stream.
#[derive(Debug)]
pub(super) struct Tracker {
    state: State,
    /// After this request's body the stream may switch protocols: stop following.
    upgrade: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            state: State::Head(Vec::new()),
            upgrade: false,
        }
    }
}

impl Tracker {
    /// Consumes `bytes`, returning a verdict for every request head completed in them.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Vec<Result<(), CheckError>> {
        let mut verdicts = Vec::new();
        while !bytes.is_empty() {
            bytes = match &mut self.state {
                State::Stopped => return verdicts,
                State::Head(head) => {
                    if head.is_empty() {
                        // Empty lines before a request line are ignored by parsers.
                        let skip = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n');
                        bytes = &bytes[skip.count()..];
                        if bytes.is_empty() {
                            return verdicts;
                        }
                    }
                    let start = head.len().saturating_sub(3);
                    head.extend_from_slice(bytes);
                    match find_head_end(&head[start..]) {
                        Some(end) => {
                            let end = start + end;
                            let rest = head.len() - end;
                            let parsed = parse_head(&head[..end]);
                            verdicts.push(parsed.verdict.clone());
                            let consumed = bytes.len() - rest;
                            self.after_head(parsed);
                            &bytes[consumed..]
                        }
                        None if head.len() > MAX_HEAD => {
                            self.state = State::Stopped;
                            return verdicts;
                        }
                        None => &[],
                    }
                }
                State::Fixed(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.end_of_body();
                    }
                    &bytes[n as usize..]
                }
                State::ChunkData(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                    &bytes[n as usize..]
                }
                State::ChunkSize(line) | State::Trailers(line) => {
                    let Some(nl) = bytes.iter().position(|b| *b == b'\n') else {
                        line.extend_from_slice(bytes);
                        if line.len() > MAX_LINE {
                            self.state = State::Stopped;
                        }
                        return verdicts;
                    };
                    line.extend_from_slice(&bytes[..nl]);
                    let line = std::mem::take(line);
                    self.end_of_line(&line);
                    &bytes[nl + 1..]
                }
            };
        }
        verdicts
    }

    fn after_head(&mut self, head: Head) {
        self.upgrade = head.upgrade;
        self.state = match head.body {
            Body::Stop => State::Stopped,
            Body::Chunked => State::ChunkSize(Vec::new()),
            Body::Fixed(n) if n > 0 => State::Fixed(n),
            Body::Fixed(_) => State::Head(Vec::new()),
        };
        if matches!(self.state, State::Head(_)) {
            self.end_of_body();
        }
    }

    fn end_of_body(&mut self) {
        self.state = if self.upgrade {
            State::Stopped
        } else {
            State::Head(Vec::new())
        };
    }

    fn end_of_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.state {
            State::ChunkSize(_) => {
                let digits = line.split(|b| *b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok());
                self.state = match size {
                    Some(0) => State::Trailers(Vec::new()),
                    Some(n) => State::ChunkData(n.saturating_add(2)),
                    None => State::Stopped,
                };
            }
            State::Trailers(_) if line.is_empty() => self.end_of_body(),
            State::Trailers(_) => self.state = State::Trailers(Vec::new()),
            _ => {}
        }
    }
}

/// Body framing a head announces.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Fixed(u64),
    Chunked,
    Stop,
}

#[derive(Debug)]
struct Head {
    verdict: Result<(), CheckError>,
    body: Body,
    upgrade: bool,
}

/// Index just past the blank line ending a head (CRLF CRLF or LF LF), if present.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        let rest = &bytes[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

fn parse_head(head: &[u8]) -> Head {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines();
    let request_line = lines.next().unwrap_or_default();
    let connect = request_line.starts_with("CONNECT ");
    let (mut lengths, mut chunked, mut te, mut upgrade) = (Vec::new(), false, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            lengths.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let mut headers = http::HeaderMap::new();
    for value in &lengths {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.append(http::header::CONTENT_LENGTH, value);
        }
    }
    if te {
        headers.insert(
            http::header::TRANSFER_ENCODING,
            http::HeaderValue::from_static("chunked"),
        );
    }
    let verdict = super::checks::framing(&headers);
    let body = match (&verdict, te, connect) {
        (Err(_), _, _) | (_, _, true) => Body::Stop,
        (Ok(()), true, _) if chunked => Body::Chunked,
        (Ok(()), true, _) => Body::Stop,
        (Ok(()), false, _) => Body::Fixed(
            lengths
                .first()
                .and_then(|l| l.split(',').next())
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0),
        ),
    };
    Head {
        verdict,
        body,
        upgrade,
    }
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
