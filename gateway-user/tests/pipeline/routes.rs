//! The fixed answers of the test's HTTP echoes (see `Echo` in `upstream.rs`): big bodies,
//! hashed uploads, trailers, bodiless statuses, hop-by-hop headers, closing connections,
//! and answers a test sets up front ([`Canned`]).

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use sha2::Digest;

use super::{EchoBody, full};

/// `response` without its content when answering HEAD (hyper's HTTP/2 server would send
/// it), its headers kept.
pub(super) fn head_only(method: &http::Method, response: Response<EchoBody>) -> Response<EchoBody> {
    if method != http::Method::HEAD {
        return response;
    }
    let (head, _) = response.into_parts();
    Response::from_parts(head, full(""))
}

/// The answers of `/bytes/<n>`, `/trailers`, `/status/<code>`, `/hop` and `/close`.
pub(super) fn special(path: &str) -> Option<Response<EchoBody>> {
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: u64 = n.parse().ok()?;
        let frames = futures_util::stream::unfold(0u64, move |offset| async move {
            (offset < n).then(|| {
                let len = (n - offset).min(64 * 1024);
                let data = Bytes::from(pattern(offset, len as usize));
                (Ok(Frame::data(data)), offset + len)
            })
        });
        let response = Response::builder()
            .header("content-length", n)
            .body(BodyExt::boxed(StreamBody::new(frames)));
        return response.ok();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_bytes(code.as_bytes()).ok()?;
        let response = Response::builder()
            .status(status)
            .header("etag", "\"v1\"")
            .body(full(""));
        return response.ok();
    }
    let response = match path {
        "/trailers" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            trailers.insert("grpc-message", "ok".parse().unwrap());
            let frames = futures_util::stream::iter([
                Ok(Frame::data(Bytes::from_static(b"fake grpc reply"))),
                Ok(Frame::trailers(trailers)),
            ]);
            Response::builder()
                .header("content-type", "application/grpc")
                .body(BodyExt::boxed(StreamBody::new(frames)))
        }
        "/hop" => Response::builder()
            .header("connection", "x-resp-hop, keep-alive")
            .header("x-resp-hop", "dropped")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic realm=\"upstream\"")
            .header("x-kept", "yes")
            .body(full("hop-free")),
        "/close" => Response::builder()
            .header("connection", "close")
            .body(full("closing")),
        _ => return None,
    };
    response.ok()
}

/// An answer set up by a test: a 200 with `headers`, its body sent as `chunks` (one frame
/// each, so a value may span several), then `trailers` if any.
#[derive(Clone, Debug, Default)]
pub struct Canned {
    /// Response headers, in order (a name may repeat).
    pub headers: Vec<(String, String)>,
    /// The body's frames.
    pub chunks: Vec<Bytes>,
    /// Trailers after the body (none when empty).
    pub trailers: Vec<(String, String)>,
}

impl Canned {
    /// `body` in `size`-byte chunks with `headers`.
    pub fn chunked(headers: &[(&str, &str)], body: &[u8], size: usize) -> Canned {
        Canned {
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            chunks: body.chunks(size).map(Bytes::copy_from_slice).collect(),
            trailers: Vec::new(),
        }
    }

    pub(super) fn response(self) -> Response<EchoBody> {
        let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = self
            .chunks
            .into_iter()
            .map(|c| Ok(Frame::data(c)))
            .collect();
        if !self.trailers.is_empty() {
            let mut trailers = HeaderMap::new();
            for (name, value) in &self.trailers {
                trailers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            frames.push(Ok(Frame::trailers(trailers)));
        }
        let mut response = Response::builder();
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        let body = StreamBody::new(futures_util::stream::iter(frames));
        response.body(BodyExt::boxed(body)).unwrap()
    }
}

/// Reads `body` to its end; returns `<length> <sha256 hex>`, or `None` if it was cut short.
pub(super) async fn hash(mut body: Incoming) -> Option<String> {
    let mut hasher = sha2::Sha256::new();
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            length += data.len() as u64;
            hasher.update(&data);
        }
    }
    Some(format!("{length} {}", hex(&hasher.finalize())))
}

/// `len` bytes of the pattern `/bytes/<n>` serves, from `offset` on (byte `i` is
/// `i mod 251`: a shifted or dropped block changes the hash).
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| (i % 251) as u8)
        .collect()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
