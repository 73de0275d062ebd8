//! HTTP transparency of the assembled data path, in-process without root: every HTTP case
//! the end-to-end tests send through the kernel (methods, paths and queries, headers, request
//! and response framing, trailers, big bodies) reaches the upstream and comes back as a
//! client would expect from the upstream itself, over HTTP/1.1 and HTTP/2 on intercepted TLS
//! and over plain HTTP.

#[cfg(test)]
#[path = "pipeline/support.rs"]
#[allow(
    dead_code,
    reason = "shared with pipeline.rs; each test binary uses part of it"
)]
mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Digest;
use support::upstream::Upstreams;
use support::upstream::routes::{hex, pattern};
use support::{Client, Gateway, Reply, Setup, exchange, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client of a new connection to the HTTPS echo with SNI `api.test` (HTTP/2 when `h2`).
async fn over_tls(gw: &Gateway, up: &Upstreams, h2: bool) -> Client {
    gw.client(up.https, Some("api.test"), h2).await
}

/// SHA-256 hex of the first `n` bytes of [`pattern`].
fn pattern_sha256(n: u64) -> String {
    let mut hasher = sha2::Sha256::new();
    let mut offset = 0;
    while offset < n {
        let len = (n - offset).min(1 << 20);
        hasher.update(pattern(offset, len as usize));
        offset += len;
    }
    hex(&hasher.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reaches_the_upstream_with_its_method_path_query_headers_and_body_intact() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let path = "/echo/a%20b/c%2Fd";
    let query = "q=1&r=two&s=%41%2b%2F&empty=&flag";
    let body = pattern(0, 100_000);
    // An HTTP/2 client cannot send connection-specific headers; an HTTP/1.1 one can, and
    // they stop at the gateway, as do what `Connection` names and the proxy's credentials.
    let hop = [
        ("connection", "x-hop, keep-alive"),
        ("x-hop", "dropped"),
        ("keep-alive", "timeout=5"),
    ];
    let cases = [("https", false), ("https", true), ("http", false)];
    for (scheme, h2) in cases {
        let mut headers = vec![
            ("x-test", "yes"),
            ("x-multi", "one"),
            ("x-multi", "two"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic c2x1aWNlOnRva2Vu"),
        ];
        if !h2 {
            headers.extend(hop);
        }
        let uri = format!("{scheme}://api.test{path}?{query}");
        let post = request("POST", &uri, "api.test", &headers, body.clone());
        let mut client = if scheme == "http" {
            gw.client(up.http, None, false).await
        } else {
            over_tls(&gw, &up, h2).await
        };
        let reply = client.send(post).await;
        let version = if h2 { "HTTP/2.0" } else { "HTTP/1.1" };
        let case = format!("{scheme} h2={h2}");
        assert_eq!(reply.status, 200, "{case}: {reply:?}");
        assert_eq!(
            reply.body,
            format!("POST api.test {path} 100000 {version}"),
            "{case}"
        );
        let seen = up.seen().pop().unwrap();
        assert_eq!(seen.tls, scheme == "https", "{case}");
        assert_eq!((seen.path.as_str(), seen.query.as_str()), (path, query));
        assert_eq!(seen.header("x-test"), "yes", "{case}");
        let multi: Vec<_> = seen.headers.get_all("x-multi").iter().collect();
        assert_eq!(
            multi,
            ["one", "two"],
            "{case}: repeated fields kept, in order"
        );
        assert_eq!(seen.header("te"), "trailers", "{case}");
        for dropped in ["x-hop", "keep-alive", "connection", "proxy-authorization"] {
            assert!(
                !seen.headers.contains_key(dropped),
                "{case}: {dropped} forwarded"
            );
        }
        assert_eq!(seen.body.len(), body.len(), "{case}");
        assert!(seen.body == body, "{case}: the body changed on the way");
    }
    let requests = gw.records("request", 3);
    for (record, (scheme, _)) in requests.iter().zip(cases) {
        assert_eq!(record["url"], format!("{scheme}://api.test{path}?{query}"));
        assert_eq!(record["method"], "POST", "{record}");
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["bytes_up"], 100_000, "{record}");
        assert!(record.get("reason").is_none(), "{record}");
        assert!(
            !record.to_string().contains("c2x1aWNl"),
            "no header values: {record}"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_dropped_and_h2_cookies_joined_for_the_upstream() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    for h2 in [false, true] {
        let mut client = over_tls(&gw, &up, h2).await;
        let reply = client
            .send(request("GET", "https://api.test/hop", "api.test", &[], ""))
            .await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "hop-free"),
            "h2={h2}"
        );
        assert_eq!(reply.header("x-kept"), "yes", "h2={h2}");
        for dropped in ["x-resp-hop", "keep-alive", "proxy-authenticate"] {
            assert!(!reply.headers.contains_key(dropped), "h2={h2}: {reply:?}");
        }
    }
    // HTTP/2 may split Cookie into several fields; HTTP/1.1 wants one.
    let mut client = over_tls(&gw, &up, true).await;
    let cookies = [("cookie", "a=1"), ("cookie", "b=2")];
    let get = request("GET", "https://api.test/c", "api.test", &cookies, "");
    assert_eq!(client.send(get).await.status, 200);
    let seen = up.seen().pop().unwrap();
    let cookie: Vec<_> = seen.headers.get_all("cookie").iter().collect();
    assert_eq!(cookie, ["a=1; b=2"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_trailers_pass_h2_to_h2() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let mut client = over_tls(&gw, &up, true).await;
    let headers = [("content-type", "application/grpc"), ("te", "trailers")];
    let post = request(
        "POST",
        "https://api.test/trailers",
        "api.test",
        &headers,
        &b"\0\0\0\0\0"[..],
    );
    let response = client.response(post).await;
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("no trailers arrived");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert_eq!(collected.to_bytes(), "fake grpc reply");
    assert_eq!(up.seen()[0].header("te"), "trailers");
    let records = gw.records("request", 1);
    assert_eq!(records[0]["protocol"], "h2>h2", "{records:?}");
    gw.stop().await;
}

/// 32 MiB each way: large enough to cross every buffer and flow-control window many times.
const BIG: u64 = 32 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_downloads_and_uploads_stream_through_intact_over_h1_and_h2() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let want = pattern_sha256(BIG);
    for h2 in [false, true] {
        let mut client = over_tls(&gw, &up, h2).await;
        let get = request(
            "GET",
            &format!("https://api.test/bytes/{BIG}"),
            "api.test",
            &[],
            "",
        );
        let response = client.response(get).await;
        assert_eq!(response.status(), 200, "h2={h2}");
        let mut body = response.into_body();
        let (mut hasher, mut got) = (sha2::Sha256::new(), 0u64);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                got += data.len() as u64;
                hasher.update(&data);
            }
        }
        assert_eq!(got, BIG, "h2={h2}: download length");
        assert_eq!(hex(&hasher.finalize()), want, "h2={h2}: download changed");

        // The upload streams without a length (chunked on HTTP/1.1).
        let chunks = futures_util::stream::unfold(0u64, |offset| async move {
            (offset < BIG).then(|| {
                let len = (BIG - offset).min(64 * 1024);
                let data = Bytes::from(pattern(offset, len as usize));
                (Ok::<_, Infallible>(Frame::data(data)), offset + len)
            })
        });
        let tls = gw
            .connect_tls(
                up.https,
                "api.test",
                &[if h2 { b"h2" } else { b"http/1.1" }],
            )
            .await
            .unwrap();
        let post = Request::post("https://api.test/hash")
            .header("host", "api.test")
            .body(StreamBody::new(Box::pin(chunks)))
            .unwrap();
        let response = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(post).await.unwrap()
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            sender.send_request(post).await.unwrap()
        };
        assert_eq!(response.status(), 200, "h2={h2}");
        let report = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(report, format!("{BIG} {want}"), "h2={h2}: upload changed");
    }
    let records = gw.records("request", 4);
    let (down, up_records): (Vec<_>, Vec<_>) = records.iter().partition(|r| r["method"] == "GET");
    for record in down {
        assert!(record["bytes_down"].as_u64() >= Some(BIG), "{record}");
    }
    for record in up_records {
        assert_eq!(record["bytes_up"], BIG, "{record}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_carry_no_body_and_the_connection_serves_the_next_request() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    for h2 in [false, true] {
        let mut client = over_tls(&gw, &up, h2).await;
        let mut send = async |method: &str, path: &str| -> Reply {
            let uri = format!("https://api.test{path}");
            client
                .send(request(method, &uri, "api.test", &[], ""))
                .await
        };
        let head = send("HEAD", "/bytes/1000").await;
        assert_eq!(head.status, 200, "h2={h2}");
        assert_eq!(head.header("content-length"), "1000", "h2={h2}: {head:?}");
        assert_eq!(head.body, "", "h2={h2}");
        let empty = send("GET", "/status/204").await;
        assert_eq!((empty.status, empty.body.as_str()), (204, ""), "h2={h2}");
        let unchanged = send("GET", "/status/304").await;
        assert_eq!((unchanged.status, unchanged.body.as_str()), (304, ""));
        assert_eq!(unchanged.header("etag"), "\"v1\"", "h2={h2}");
        // Had a body followed any of them, this answer would be misread or never come.
        let next = send("GET", "/next").await;
        assert_eq!(next.status, 200, "h2={h2}: {next:?}");
        assert!(next.body.starts_with("GET api.test /next 0"), "{next:?}");
    }
    let heads = up.heads();
    assert_eq!(heads.iter().filter(|h| h.starts_with("HEAD ")).count(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let mut tls = gw
        .connect_tls(up.https, "api.test", &[b"http/1.1"])
        .await
        .unwrap();
    tls.write_all(
        b"POST /expect HTTP/1.1\r\nHost: api.test\r\nContent-Length: 11\r\n\
          Expect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    // The client waits for the interim answer before it sends the body.
    let mut interim = Vec::new();
    let read_interim = async {
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            assert_eq!(tls.read(&mut byte).await.unwrap(), 1, "closed: {interim:?}");
            interim.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_interim)
        .await
        .expect("no 100 Continue before the body");
    let interim = String::from_utf8_lossy(&interim).to_ascii_lowercase();
    assert!(
        interim.starts_with("http/1.1 100 continue\r\n"),
        "{interim}"
    );
    let answer = exchange(tls, b"hello world").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with("POST api.test /expect 11 HTTP/1.1"),
        "{answer}"
    );
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.body, "hello world");
    assert!(
        !seen.headers.contains_key("expect"),
        "answered by the gateway"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_body_reaches_the_upstream_whole() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let chunked = "POST /chunked HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\
                   Connection: close\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
    let tls = gw
        .connect_tls(up.https, "api.test", &[b"http/1.1"])
        .await
        .unwrap();
    let plain = gw.connect(up.http).await;
    for answer in [
        exchange(tls, chunked.as_bytes()).await,
        exchange(plain, chunked.as_bytes()).await,
    ] {
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with("POST api.test /chunked 11 HTTP/1.1"),
            "{answer}"
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.body == "hello world"), "{seen:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_and_connection_close_ends_the_connection() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let pipelined = "GET /first HTTP/1.1\r\nHost: api.test\r\n\r\n\
                     POST /second HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc\
                     GET /third HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n";
    let tls = gw
        .connect_tls(up.https, "api.test", &[b"http/1.1"])
        .await
        .unwrap();
    let plain = gw.connect(up.http).await;
    for answer in [
        exchange(tls, pipelined.as_bytes()).await,
        exchange(plain, pipelined.as_bytes()).await,
    ] {
        assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
        let at = |body: &str| {
            answer
                .find(body)
                .unwrap_or_else(|| panic!("{body}: {answer}"))
        };
        let first = at("GET api.test /first 0 HTTP/1.1");
        let second = at("POST api.test /second 3 HTTP/1.1");
        let third = at("GET api.test /third 0 HTTP/1.1");
        assert!(first < second && second < third, "out of order: {answer}");
        // The last answer says the connection ends, and it did (`exchange` read to its end).
        let last_head = &answer[answer.rfind("HTTP/1.1 200").unwrap()..third];
        assert!(last_head.contains("connection: close"), "{answer}");
    }
    let heads = up.heads();
    let want = ["GET /first", "POST /second", "GET /third"];
    assert_eq!(heads, [want, want].concat(), "in order, once each");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_its_connection_leaves_the_sandboxs_connection_serving() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    for h2 in [false, true] {
        let mut client = over_tls(&gw, &up, h2).await;
        let get = |path: &str| {
            request(
                "GET",
                &format!("https://api.test{path}"),
                "api.test",
                &[],
                "",
            )
        };
        let closing = client.send(get("/close")).await;
        assert_eq!((closing.status, closing.body.as_str()), (200, "closing"));
        let again = client.send(get("/again")).await;
        assert_eq!(again.status, 200, "h2={h2}: {again:?}");
        assert!(again.body.starts_with("GET api.test /again 0"), "{again:?}");
    }
    gw.stop().await;
}
