//! Route handlers of the HTTP fake, and the report types tests parse.

use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, UPGRADE,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::conn::{Body, ConnInfo};

/// What the echo (and sink) routes saw, returned as the JSON response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReport {
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// URI authority (HTTP/2) or `Host` header (HTTP/1.1).
    pub authority: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Headers in arrival order, names lowercase; values that are not UTF-8 are lossy.
    pub headers: Vec<(String, String)>,
    /// Bytes of request body received.
    pub body_len: u64,
    /// Lowercase hex sha256 of the request body.
    pub body_sha256: String,
    /// Set when reading the body failed (upload cut short).
    pub body_error: Option<String>,
    /// TCP peer address.
    pub peer: String,
    /// Whether the connection was TLS.
    pub tls: bool,
    /// SNI sent by the client.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
}

impl EchoReport {
    /// Parses a response body produced by the echo route.
    pub fn parse(body: &[u8]) -> Result<EchoReport, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response given as it is by [`super::HttpUpstream::canned`].
#[derive(Debug, Clone, Default)]
pub struct Canned {
    /// Status code (0 means 200).
    pub status: u16,
    /// Headers, in order (`content-type: text/plain` when none is given).
    pub headers: Vec<(String, String)>,
    /// Body chunks, each sent as its own frame.
    pub chunks: Vec<Bytes>,
    /// Trailers sent after the body (HTTP/2, or HTTP/1.1 chunked with `TE: trailers`).
    pub trailers: Vec<(String, String)>,
}

/// One server-sent event of the `sse` route: `data: {"seq":N,"sent_us":T}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseEvent {
    /// 0-based event number.
    pub seq: u64,
    /// When the upstream sent it, in microseconds since the Unix epoch.
    pub sent_us: u64,
}

impl SseEvent {
    /// Parses one `data: {...}` line; other lines give `None`.
    pub fn parse(line: &str) -> Option<SseEvent> {
        serde_json::from_str(line.trim_end().strip_prefix("data: ")?).ok()
    }

    /// Microseconds since the Unix epoch now, to compare with `sent_us`.
    pub fn now_us() -> u64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    }
}

/// Byte `i` of the `bytes` route's payload is `i % 251`; this returns `len` bytes from
/// `offset`, so tests can check any slice of a download.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((offset + i) % 251) as u8)
        .collect()
}

/// Lowercase hex sha256 of the first `n` bytes of [`pattern`].
pub fn pattern_sha256(n: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < n {
        let len = CHUNK.min(n - offset);
        hasher.update(pattern_chunk(offset, len));
        offset += len;
    }
    hex(&hasher.finalize())
}

/// Lowercase hex sha256 of `data`, as [`EchoReport::body_sha256`] reports it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

const CHUNK: u64 = 64 * 1024;

pub(crate) fn fixed(status: u16, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

pub(crate) async fn echo(request: Request<Incoming>, info: &ConnInfo) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let drained = drain(body).await;
    let authority = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
    });
    let report = EchoReport {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        authority,
        version: format!("{:?}", parts.version),
        headers: header_pairs(&parts.headers),
        body_len: drained.len,
        body_sha256: drained.sha256,
        body_error: drained.error,
        peer: info.peer.to_string(),
        tls: info.tls,
        sni: info.sni.clone(),
        alpn: info.alpn.clone(),
    };
    let json = serde_json::to_vec(&report).unwrap_or_default();
    let mut response = fixed(200, Bytes::from(json));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Echo the credential-bearing header back as a header too (scrubbing tests).
    if let Some(auth) = parts.headers.get(http::header::AUTHORIZATION) {
        headers.insert("x-echoed-authorization", auth.clone());
    }
    response
}

pub(crate) async fn canned(request: Request<Incoming>, canned: &Canned) -> Response<Body> {
    drain(request.into_body()).await;
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = canned
        .chunks
        .iter()
        .map(|c| Ok(Frame::data(c.clone())))
        .collect();
    let mut trailers = HeaderMap::new();
    for (name, value) in &canned.trailers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            trailers.append(name, value);
        }
    }
    if !trailers.is_empty() {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    let mut response = Response::new(StreamBody::new(stream::iter(frames)).boxed_unsync());
    *response.status_mut() = StatusCode::from_u16(if canned.status == 0 {
        200
    } else {
        canned.status
    })
    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    for (name, value) in &canned.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

pub(crate) fn sse(events: usize, interval: Duration) -> Response<Body> {
    let events = stream::unfold(0usize, move |seq| async move {
        if seq >= events {
            return None;
        }
        if seq > 0 {
            tokio::time::sleep(interval).await;
        }
        let sent_us = SseEvent::now_us();
        let text =
            format!("id: {seq}\nevent: tick\ndata: {{\"seq\":{seq},\"sent_us\":{sent_us}}}\n\n");
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), seq + 1))
    });
    let mut response = Response::new(StreamBody::new(events).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}

pub(crate) async fn trailers(request: Request<Incoming>) -> Response<Body> {
    drain(request.into_body()).await;
    // One gRPC length-prefixed message: flag 0 (uncompressed), u32 length, payload.
    let payload = b"fake grpc reply";
    let mut message = vec![0u8];
    message.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    message.extend_from_slice(payload);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from(message))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = Response::new(StreamBody::new(stream::iter(frames)).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

pub(crate) fn bytes(n: u64) -> Response<Body> {
    let chunks = stream::unfold(0u64, move |offset| async move {
        if offset >= n {
            return None;
        }
        let len = CHUNK.min(n - offset);
        Some((
            Ok::<_, Infallible>(Frame::data(pattern_chunk(offset, len))),
            offset + len,
        ))
    });
    let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
    response
}

pub(crate) fn websocket_echo(
    mut request: Request<Incoming>,
    options: &super::WebSocketEcho,
) -> Response<Body> {
    let wants_ws = request
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = request.headers().get(http::header::SEC_WEBSOCKET_KEY);
    let (true, Some(key)) = (wants_ws, key) else {
        return fixed(
            400,
            Bytes::from_static(b"expected an HTTP/1.1 websocket upgrade\n"),
        );
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return fixed(500, Bytes::from_static(b"bad accept key\n"));
    };
    let greeting = options.header.as_ref().map(|name| {
        let value = request
            .headers()
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        vec![
            Message::text(String::from_utf8_lossy(&value).into_owned()),
            Message::binary(hex.into_bytes()),
            Message::text(BASE64.encode(&value)),
        ]
    });
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        for message in greeting.into_iter().flatten() {
            if ws.send(message).await.is_err() {
                return;
            }
        }
        // Close and ping are answered by tungstenite itself; the stream ends after close.
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = fixed(101, Bytes::new());
    let headers = response.headers_mut();
    headers.remove(CONTENT_TYPE);
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    if options.force_deflate {
        headers.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
    }
    response
}

struct Drained {
    len: u64,
    sha256: String,
    error: Option<String>,
}

/// Reads a request body to the end, hashing as it streams.
async fn drain(mut body: Incoming) -> Drained {
    let mut hasher = Sha256::new();
    let (mut len, mut error) = (0u64, None);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    hasher.update(data);
                    len += data.len() as u64;
                }
            }
            Err(err) => {
                error = Some(err.to_string());
                break;
            }
        }
    }
    Drained {
        len,
        sha256: hex(&hasher.finalize()),
        error,
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// 64 KiB + 251 bytes of pattern, so any chunk is a zero-copy slice.
static PATTERN: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(pattern(0, CHUNK as usize + 251)));

fn pattern_chunk(offset: u64, len: u64) -> Bytes {
    let start = (offset % 251) as usize;
    PATTERN.slice(start..start + len as usize)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_chunks_match_pattern() {
        for (offset, len) in [(0, 10), (250, 5), (251, 251), (1_000_003, 70_000 % CHUNK)] {
            assert_eq!(
                pattern_chunk(offset, len).to_vec(),
                pattern(offset, len as usize)
            );
        }
        assert_eq!(pattern_sha256(300_000), sha256_hex(&pattern(0, 300_000)));
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sse_event_lines_parse() {
        let cases: &[(&str, Option<SseEvent>)] = &[
            (
                "data: {\"seq\":3,\"sent_us\":17}\n",
                Some(SseEvent {
                    seq: 3,
                    sent_us: 17,
                }),
            ),
            ("id: 3", None),
            ("event: tick", None),
            ("data: nonsense", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(SseEvent::parse(line), *want, "{line:?}");
        }
        assert!(SseEvent::now_us() > 1_600_000_000_000_000);
    }

    #[test]
    fn echo_report_header_lookup_is_case_insensitive() {
        let report: EchoReport = serde_json::from_value(serde_json::json!({
            "method": "GET", "path": "/", "query": null, "authority": null, "version": "HTTP/1.1",
            "headers": [["x-a", "1"], ["x-a", "2"]], "body_len": 0, "body_sha256": "",
            "body_error": null, "peer": "198.51.100.1:1", "tls": false, "sni": null, "alpn": null
        }))
        .unwrap();
        assert_eq!(report.header("X-A"), Some("1"));
        assert_eq!(report.header("x-b"), None);
    }
}
