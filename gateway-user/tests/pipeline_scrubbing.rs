//! Echoes of a session's secret scrubbed in every form through the assembled data path,
//! in-process without root: an upstream that sends the value back in a header, in h2
//! trailers, compressed (gzip, deflate, br, zstd), hex, percent-encoded, base64 / base64url or
//! JSON-escaped, split across chunks, reaches the sandbox only as the placeholder (in the same
//! form); a body the gateway cannot decode (unknown or stacked codings, corrupt data) or a
//! WebSocket extension it cannot read is refused with a 502, never passed. Each case as the
//! sandbox reads it (decoding what it is sent, as a client would), and as the audit log
//! records it.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

#[cfg(test)]
#[path = "pipeline/support.rs"]
#[allow(
    dead_code,
    reason = "shared with pipeline.rs; each test binary uses part of it"
)]
mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use http::HeaderMap;
use http_body_util::BodyExt;
use sluice::policy::PolicySpec;
use sluice::session::NewSession;
use support::upstream::{Canned, Upstreams};
use support::{Client, Gateway, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The real value, bound to api.test. Its base64 has `/` and `+`, so base64url differs.
const SECRET: &str = "sk-live/8c1f+0e7d?2b9a>>4c6e~8f1a3b5d7c9";
const PLACEHOLDER: &str = "sluice_cred:API_KEY";

/// A ten-minute session holding `API_KEY` = [`SECRET`], bound to api.test.
fn session() -> NewSession {
    support::session_with(vec![support::api_key(SECRET)], PolicySpec::default())
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form of [`SECRET`] the sandbox must never read.
fn secret_forms() -> Vec<String> {
    vec![
        SECRET.into(),
        SECRET.replace('/', "\\/"),
        hex(SECRET),
        hex(SECRET).to_uppercase(),
        percent(SECRET),
        STANDARD.encode(SECRET),
        URL_SAFE.encode(SECRET),
        // The value's own characters inside a longer base64 string.
        STANDARD.encode(format!("user:{SECRET}"))[8..40].to_owned(),
    ]
}

fn assert_no_secret(text: &str, what: &str) {
    for form in secret_forms() {
        assert!(!text.contains(&form), "{what}: read {form:?} in {text}");
    }
}

/// `data` encoded with `coding` (`gzip`, `deflate`, `br`, else `zstd`).
async fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
    let mut out = Vec::new();
    match coding {
        "gzip" => GzipEncoder::new(data).read_to_end(&mut out).await,
        "deflate" => ZlibEncoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliEncoder::new(data).read_to_end(&mut out).await,
        _ => ZstdEncoder::new(data).read_to_end(&mut out).await,
    }
    .unwrap();
    out
}

/// `data` decoded as a client would read a body sent with `coding` (as is without one, or
/// with one no client decodes).
async fn decompress(coding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
    let mut out = Vec::new();
    let read = match coding {
        "gzip" => GzipDecoder::new(data).read_to_end(&mut out).await,
        "deflate" => ZlibDecoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(data).read_to_end(&mut out).await,
        _ => return data.to_vec(),
    };
    read.unwrap();
    out
}

/// What the sandbox reads of one response: status, headers, the body decoded as its
/// `content-encoding` says, trailers.
#[derive(Debug)]
struct Read {
    status: u16,
    headers: HeaderMap,
    body: String,
    trailers: HeaderMap,
}

impl Read {
    /// Everything but the status, as text (to search for the secret).
    fn text(&self) -> String {
        format!("{:?}\n{}\n{:?}", self.headers, self.body, self.trailers)
    }
}

/// `GET https://api.test{path}` from a sandbox of session `id` over a new TLS connection
/// (HTTP/2 when `h2`).
async fn fetch(gw: &Gateway, up: &Upstreams, id: &str, h2: bool, path: &str) -> Read {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let tls = gw
        .connect_tls_in(id, up.https, "api.test", &[alpn])
        .await
        .unwrap();
    let url = format!("https://api.test{path}");
    let get = request("GET", &url, "api.test", &[("te", "trailers")], "");
    let response = Client::open(tls, h2).await.response(get).await;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let coding = parts
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = decompress(&coding, &collected.to_bytes()).await;
    Read {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        trailers,
    }
}

/// A canned answer of `body` in 7-byte chunks (so the value spans several) with `headers`.
fn canned(headers: &[(&str, &str)], body: &[u8]) -> Canned {
    Canned::chunked(headers, body, 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_reach_the_sandbox_only_as_placeholders_in_every_form() {
    let up = Upstreams::start().await;
    let echoed = format!("{{\"token\":\"{SECRET}\"}}");
    let scrubbed = format!("{{\"token\":\"{PLACEHOLDER}\"}}");
    // Each path: what the upstream sends, and what the sandbox reads instead.
    let mut cases: Vec<(&str, Canned, String)> = vec![
        (
            "/header",
            canned(&[("x-echo", SECRET)], b"see headers\n"),
            PLACEHOLDER.into(),
        ),
        (
            "/hex",
            canned(&[], format!("hex={}\n", hex(SECRET)).as_bytes()),
            format!("hex={}\n", hex(PLACEHOLDER)),
        ),
        (
            "/HEX",
            canned(
                &[],
                format!("hex={}\n", hex(SECRET).to_uppercase()).as_bytes(),
            ),
            format!("hex={}\n", hex(PLACEHOLDER).to_uppercase()),
        ),
        (
            "/percent",
            canned(&[], format!("p={}\n", percent(SECRET)).as_bytes()),
            format!("p={}\n", percent(PLACEHOLDER)),
        ),
        (
            "/base64",
            canned(&[], format!("b={}\n", STANDARD.encode(SECRET)).as_bytes()),
            format!("b={}\n", STANDARD.encode(PLACEHOLDER)),
        ),
        (
            "/base64url",
            canned(&[], format!("b={}\n", URL_SAFE.encode(SECRET)).as_bytes()),
            format!("b={}\n", URL_SAFE.encode(PLACEHOLDER)),
        ),
        (
            // JSON with `/` escaped, as PHP and others write it.
            "/json",
            canned(
                &[],
                format!("{{\"t\":\"{}\"}}", SECRET.replace('/', "\\/")).as_bytes(),
            ),
            format!("{{\"t\":\"{PLACEHOLDER}\"}}"),
        ),
    ];
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let body = compress(coding, echoed.as_bytes()).await;
        let path = match coding {
            "gzip" => "/gzip",
            "deflate" => "/deflate",
            "br" => "/br",
            _ => "/zstd",
        };
        let headers = [("content-encoding", coding)];
        cases.push((path, canned(&headers, &body), scrubbed.clone()));
    }
    for (path, answer, _) in &cases {
        up.can(path, answer.clone());
    }
    let basic = format!("basic={}\n", STANDARD.encode(format!("user:{SECRET}")));
    up.can("/basic", canned(&[], basic.as_bytes()));
    up.can(
        "/trailer",
        Canned {
            trailers: vec![("x-echo".into(), format!("Bearer {SECRET}"))],
            ..canned(&[], b"see trailers\n")
        },
    );
    let gw = Gateway::start(Default::default(), &up).await;
    let id = gw.create_session(session()).await;
    assert_ne!(STANDARD.encode(SECRET), URL_SAFE.encode(SECRET));

    for h2 in [false, true] {
        for (path, _, want) in &cases {
            let read = fetch(&gw, &up, &id, h2, path).await;
            assert_eq!(read.status, 200, "h2={h2} {path}: {read:?}");
            assert_no_secret(&read.text(), &format!("h2={h2} {path}"));
            if *path == "/header" {
                assert_eq!(read.headers["x-echo"], want.as_str(), "h2={h2}: {read:?}");
            } else {
                assert_eq!(&read.body, want, "h2={h2} {path}: {read:?}");
            }
            // A decoded body is sent on identity-encoded.
            assert!(
                !read.headers.contains_key("content-encoding"),
                "h2={h2} {path}: {read:?}"
            );
        }
        let read = fetch(&gw, &up, &id, h2, "/basic").await;
        assert_eq!(read.status, 200, "h2={h2}: {read:?}");
        assert_no_secret(&read.text(), &format!("h2={h2} /basic"));
        let read = fetch(&gw, &up, &id, h2, "/trailer").await;
        assert_eq!(read.status, 200, "h2={h2}: {read:?}");
        assert_no_secret(&read.text(), &format!("h2={h2} /trailer"));
        if h2 {
            let bearer = format!("Bearer {PLACEHOLDER}");
            assert_eq!(read.trailers["x-echo"], bearer.as_str(), "{read:?}");
        }
    }
    let n = 2 * (cases.len() + 2);
    let records = gw.records("request", n);
    assert!(
        records
            .iter()
            .all(|r| r["status"] == 200 && r["decision"] == "allow"),
        "{records:?}"
    );
    let audit = gw.stop().await;
    assert_no_secret(&audit, "the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_the_gateway_cannot_decode_are_refused_not_passed() {
    let up = Upstreams::start().await;
    let echoed = format!("{{\"token\":\"{SECRET}\"}}");
    let stacked = compress("br", &compress("gzip", echoed.as_bytes()).await).await;
    let cases = [
        (
            "/compress",
            canned(&[("content-encoding", "compress")], echoed.as_bytes()),
            "encoded with `compress`, which the gateway cannot decode",
        ),
        (
            "/stacked",
            canned(&[("content-encoding", "gzip, br")], &stacked),
            "encoded several times (gzip, br)",
        ),
        (
            // Says gzip, is not.
            "/corrupt",
            canned(&[("content-encoding", "gzip")], echoed.as_bytes()),
            "the gzip response body does not decode",
        ),
    ];
    for (path, answer, _) in &cases {
        up.can(path, answer.clone());
    }
    let gw = Gateway::start(Default::default(), &up).await;
    let id = gw.create_session(session()).await;
    for h2 in [false, true] {
        for (path, _, reason) in &cases {
            let read = fetch(&gw, &up, &id, h2, path).await;
            assert_eq!(read.status, 502, "h2={h2} {path}: {read:?}");
            assert!(read.body.contains(reason), "h2={h2} {path}: {read:?}");
            assert_no_secret(&read.text(), path);
        }
    }
    let records = gw.records("request", 2 * cases.len());
    for (path, _, reason) in &cases {
        let url = format!("https://api.test{path}");
        let refused: Vec<_> = records
            .iter()
            .filter(|r| r["url"] == url.as_str())
            .collect();
        assert_eq!(refused.len(), 2, "{path}: {records:?}");
        assert!(
            refused.iter().all(|r| r["status"] == 502
                && r["side"] == "upstream"
                && r["reason"].as_str().is_some_and(|t| t.contains(reason))),
            "{path}: {refused:?}"
        );
    }
    let audit = gw.stop().await;
    assert_no_secret(&audit, "the audit log");
}

/// An upstream that answers one WebSocket upgrade with `permessage-deflate` whether or not
/// it was offered; the channel carries the upgrade request's head as it arrived.
async fn deflating_websocket_upstream()
-> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard, on_head) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap() == 1 {
            head.push(byte[0]);
        }
        let _ = heard.send(String::from_utf8_lossy(&head).into_owned());
        let _ = stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                  Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            )
            .await;
        let mut rest = [0u8; 64];
        while stream.read(&mut rest).await.is_ok_and(|n| n > 0) {}
    });
    (addr, on_head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_extension_the_gateway_cannot_scrub_is_refused() {
    let up = Upstreams::start().await;
    let (ws, on_head) = deflating_websocket_upstream().await;
    let gw = Gateway::start(Default::default(), &up).await;
    let id = gw.create_session(session()).await;
    let mut client = gw.connect_in(&id, ws).await;
    client
        .write_all(
            b"GET /deflate HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        )
        .await
        .unwrap();
    let reason = "upstream negotiated a WebSocket extension the gateway cannot scrub";
    // Read until the reason arrives or the gateway closes (the connection may stay open).
    let mut answer = String::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while !answer.contains(reason) {
            match client.read(&mut chunk).await {
                Ok(n) if n > 0 => answer += &String::from_utf8_lossy(&chunk[..n]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the gateway neither answered nor closed");
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains(reason), "{answer}");
    // The sandbox's offer was not passed on: the upstream chose compression by itself.
    let head = tokio::time::timeout(Duration::from_secs(10), on_head)
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("GET /deflate"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
    let record = gw.records("request", 1).remove(0);
    assert_eq!(record["status"], 502, "{record}");
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|t| t.contains(reason)),
        "{record}"
    );
    gw.stop().await;
}
