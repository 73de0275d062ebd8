//! Decoding compressed upstream responses, so a response filter (the scrubber) reads what
//! the sandbox would read.
//!
//! The gateway asks for `Accept-Encoding: identity`, but an upstream may compress anyway.
//! A single `gzip` (or `x-gzip`), `deflate` (zlib), `br` or `zstd` coding is decoded as the
//! body streams (bounded buffers; zstd windows capped at 8 MiB as RFC 9659 sets for HTTP)
//! and sent on identity-encoded. Anything else is refused: fail closed, never passed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::Bytes;
use futures_util::Stream;
use http::HeaderMap;
use http::header::CONTENT_ENCODING;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

use super::body::BoxBody;
use crate::upstream::BoxError;

/// Decoded bytes handed on per frame, at most.
const CHUNK: usize = 16 * 1024;

/// A content coding the engine decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Coding {
    /// `gzip`, `x-gzip` (multi-member streams allowed).
    Gzip,
    /// `deflate`: zlib-wrapped DEFLATE (RFC 9110).
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// Why a response body cannot be read for scrubbing.
#[derive(Debug, thiserror::Error)]
pub(super) enum DecodeError {
    /// A coding the gateway does not decode.
    #[error(
        "upstream: the response is encoded with `{0}`, which the gateway cannot decode to scrub \
         the session's credentials out of it; refused (it asks upstreams for `identity`, and \
         decodes gzip, deflate, br and zstd)"
    )]
    Unsupported(String),
    /// More than one coding applied.
    #[error(
        "upstream: the response is encoded several times ({0}); the gateway decodes only one \
         coding, so it cannot scrub the session's credentials out of it; refused"
    )]
    Stacked(String),
    /// The body does not decode as its coding says.
    #[error("upstream: the {coding} response body does not decode ({reason}); refused")]
    Corrupt {
        /// The coding.
        coding: &'static str,
        /// The decoder's error.
        reason: String,
    },
}

impl crate::audit::Sided for DecodeError {
    /// The upstream chose the coding and sent the bytes.
    fn side(&self) -> crate::audit::Side {
        crate::audit::Side::Upstream
    }
}

/// The coding to undo for a response with `headers`: `None` for identity (or none).
///
/// # Errors
/// [`DecodeError::Unsupported`] for an unknown coding, [`DecodeError::Stacked`] for more
/// than one.
pub(super) fn coding(headers: &HeaderMap) -> Result<Option<Coding>, DecodeError> {
    let mut codings = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| DecodeError::Unsupported("(a value that is not text)".into()))?;
        codings.extend(
            text.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "identity"),
        );
    }
    match codings.as_slice() {
        [] => Ok(None),
        [one] => match one.as_str() {
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            "br" => Ok(Some(Coding::Brotli)),
            "zstd" => Ok(Some(Coding::Zstd)),
            other => Err(DecodeError::Unsupported(other.chars().take(64).collect())),
        },
        many => Err(DecodeError::Stacked(
            many.join(", ").chars().take(128).collect(),
        )),
    }
}

/// `body` decoded from `coding`, streamed; trailers follow the decoded data. A body that
/// does not decode ends with a [`DecodeError::Corrupt`] error.
pub(super) fn decoded(body: BoxBody, coding: Coding) -> BoxBody {
    let source = Arc::new(Mutex::new(Source {
        body,
        trailers: None,
    }));
    let reader = StreamReader::new(Data {
        source: source.clone(),
    });
    let decoder: Pin<Box<dyn AsyncRead + Send>> = match coding {
        Coding::Gzip => {
            let mut decoder = GzipDecoder::new(reader);
            decoder.multiple_members(true);
            Box::pin(decoder)
        }
        Coding::Deflate => Box::pin(ZlibDecoder::new(reader)),
        Coding::Brotli => Box::pin(BrotliDecoder::new(reader)),
        Coding::Zstd => Box::pin(ZstdDecoder::new_for_http(reader)),
    };
    Decoded {
        frames: ReaderStream::with_capacity(decoder, CHUNK),
        source,
        coding,
        state: State::Decoding,
    }
    .boxed_unsync()
}

/// Waits for the first frame of `body` (or its end) and returns the body with that frame
/// put back in front.
///
/// # Errors
/// The body's error, when it fails before giving a frame.
pub(super) async fn first_frame(mut body: BoxBody) -> Result<BoxBody, BoxError> {
    let first = match body.frame().await {
        None => None,
        Some(Ok(frame)) => Some(frame),
        Some(Err(error)) => return Err(error),
    };
    Ok(Primed { first, rest: body }.boxed_unsync())
}

/// A body whose first frame was already read.
struct Primed {
    first: Option<Frame<Bytes>>,
    rest: BoxBody,
}

impl Body for Primed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.first.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }
}

/// The compressed body, shared by the reader that feeds the decoder and the drain after it.
struct Source {
    body: BoxBody,
    trailers: Option<HeaderMap>,
}

type Shared = Arc<Mutex<Source>>;

fn lock(source: &Shared) -> std::sync::MutexGuard<'_, Source> {
    source.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls the next data frame of `source`, keeping trailers aside.
fn poll_data(source: &Shared, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
    let mut source = lock(source);
    loop {
        return match Pin::new(&mut source.body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(io::Error::other(error)))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => Poll::Ready(Some(Ok(data))),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        source.trailers = Some(trailers);
                    }
                    continue;
                }
            },
        };
    }
}

/// The data frames of a body as a byte stream, for the decoder.
struct Data {
    source: Shared,
}

impl Stream for Data {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        poll_data(&self.source, cx)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Handing on decoded bytes.
    Decoding,
    /// The compressed stream ended: reading the rest of the body (its trailers).
    Draining,
    /// Everything was sent (or an error ended the body).
    Done,
}

struct Decoded {
    frames: ReaderStream<Pin<Box<dyn AsyncRead + Send>>>,
    source: Shared,
    coding: Coding,
    state: State,
}

impl Decoded {
    fn fail(&mut self, reason: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        let error = DecodeError::Corrupt {
            coding: self.coding.name(),
            reason,
        };
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl Body for Decoded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.state == State::Decoding {
            match Pin::new(&mut this.frames).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(Some(Err(error))) => return this.fail(error.to_string()),
                Poll::Ready(None) => this.state = State::Draining,
            }
        }
        if this.state == State::Draining {
            match poll_data(&this.source, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(_))) => {
                    return this.fail("data after the end of the compressed stream".into());
                }
                Poll::Ready(Some(Err(error))) => return this.fail(error.to_string()),
                Poll::Ready(None) => {
                    this.state = State::Done;
                    let trailers = lock(&this.source).trailers.take();
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
            }
        }
        Poll::Ready(None)
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
