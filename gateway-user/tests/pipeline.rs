//! Transparency of the assembled data path (accept → identify → detect → route → intercept
//! or relay → audit), run in-process without root: every case a client would notice, and
//! the refusals an attacker in a sandbox would meet.

#[cfg(test)]
#[path = "pipeline/support.rs"]
#[allow(
    dead_code,
    reason = "shared with pipeline_sessions.rs; each test binary uses part of it"
)]
mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use sluice::config::PolicyConfig;
use support::upstream::{Upstreams, websocket_upstream};
use support::{Gateway, Setup, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn get(uri: &str, host: &str) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = http::Uri::try_from(uri).unwrap_or_default();
    if let Ok(value) = http::HeaderValue::from_str(host) {
        request.headers_mut().insert(http::header::HOST, value);
    }
    request
}

/// `GET https://{name}/` to the HTTPS echo over a new HTTP/1.1 connection whose SNI is `name`;
/// status 0 and the error when the TLS connection fails.
async fn get_root_over_http1(gw: &Gateway, up: &Upstreams, name: &str) -> (u16, String) {
    match gw.connect_tls(up.https, name, &[b"http/1.1"]).await {
        Ok(tls) => send(tls, false, get(&format!("https://{name}/"), name)).await,
        Err(e) => (0, format!("TLS through the gateway failed: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_intercepted_and_its_records_are_tied() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let client = gw.connect(up.http).await;
    let post = Request::post("/items?x=1")
        .header("host", "plain.test:8080")
        .body(Full::new(Bytes::from_static(b"twelve bytes")))
        .unwrap();
    let (status, body) = send(client, false, post).await;
    assert_eq!(status, 200);
    assert_eq!(body, "POST plain.test:8080 /items 12 HTTP/1.1");
    let requests = gw.records("request", 1);
    let connections = gw.records("connection", 1);
    let (request, connection) = (&requests[0], &connections[0]);
    assert_eq!(request["url"], "http://plain.test:8080/items?x=1");
    assert_eq!(request["decision"], "allow");
    assert!(request.get("side").is_none(), "{request}");
    assert_eq!(request["request"], 1);
    assert_eq!(connection["mode"], "intercept");
    assert_eq!(connection["host"], "plain.test");
    assert_eq!(connection["sandbox"], 7);
    assert!(connection["conn"].is_string(), "{connection}");
    assert_eq!(
        request["conn"], connection["conn"],
        "request tied to its connection"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_intercepted_over_http1_and_h2() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    // The upstream offers both; Sluice offers it what the sandbox spoke.
    let cases = [
        (false, &b"http/1.1"[..], "HTTP/1.1", "http/1.1>http/1.1"),
        (true, &b"h2"[..], "HTTP/2.0", "h2>h2"),
    ];
    for (h2, alpn, upstream_version, _) in cases {
        let tls = gw
            .connect_tls(up.https, "API.Example.test.", &[alpn])
            .await
            .unwrap();
        let (status, body) = send(
            tls,
            h2,
            get("https://api.example.test/v1/x", "api.example.test"),
        )
        .await;
        assert_eq!(status, 200, "h2={h2}: {body}");
        assert_eq!(
            body,
            format!("GET api.example.test /v1/x 0 {upstream_version}"),
            "h2={h2}"
        );
    }
    let requests = gw.records("request", 2);
    for (request, (.., protocol)) in requests.iter().zip(cases) {
        assert_eq!(request["url"], "https://api.example.test/v1/x");
        assert_eq!(request["host"], "api.example.test");
        assert_eq!(request["protocol"], protocol);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misdirected_host_on_a_tls_connection_is_421() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let tls = gw
        .connect_tls(up.https, "api.example.test", &[b"http/1.1"])
        .await
        .unwrap();
    let (status, body) = send(tls, false, get("/", "other.example.test")).await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("other.example.test"), "{body}");
    // The request record says who is to blame, as connection records do; the body the
    // client reads is the reason without the side.
    let requests = gw.records("request", 1);
    let request = &requests[0];
    assert_eq!(request["decision"], "deny", "{request}");
    assert_eq!(request["side"], "downstream", "{request}");
    assert_eq!(request["status"], 421, "{request}");
    assert_eq!(
        request["reason"].as_str(),
        body.trim_end()
            .strip_prefix("sluice: ")
            .map(|said| format!("downstream: {said}"))
            .as_deref(),
        "{request}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_connection_reads_a_403_naming_the_reason() {
    let up = Upstreams::start().await;
    // pinned.test is passed through, but only toward its own address: a sandbox aiming
    // its SNI at another destination is refused, and told so over TLS.
    let setup = Setup {
        policy: PolicyConfig {
            passthrough: vec![format!("pinned.test:{}", up.https.port())],
            tcp_allow: Vec::new(),
        },
        hosts: vec![("pinned.test", "127.0.0.99")],
        ..Setup::default()
    };
    let gw = Gateway::start(setup, &up).await;
    let tls = gw
        .connect_tls(up.https, "pinned.test", &[b"http/1.1"])
        .await
        .unwrap();
    let (status, body) = send(tls, false, get("/", "pinned.test")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("127.0.0.1 is not an address of pinned.test"),
        "{body}"
    );
    let connections = gw.records("connection", 1);
    assert_eq!(connections[0]["decision"], "deny");
    assert_eq!(connections[0]["mode"], "refused");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_to_the_names_own_address_is_copied_untouched() {
    let up = Upstreams::start().await;
    let setup = Setup {
        policy: PolicyConfig {
            passthrough: vec![format!("pinned.test:{}", up.https.port())],
            tcp_allow: Vec::new(),
        },
        hosts: vec![("pinned.test", "127.0.0.1")],
        ..Setup::default()
    };
    let gw = Gateway::start(setup, &up).await;
    // The client does not trust Sluice's CA for a passed-through host: the upstream's own
    // certificate arrives untouched (the handshake fails against the Sluice CA only).
    let refused = gw
        .connect_tls(up.https, "pinned.test", &[b"http/1.1"])
        .await;
    assert!(refused.is_err(), "the upstream's leaf is not Sluice's");
    let connections = gw.records("connection", 1);
    assert_eq!(connections[0]["mode"], "passthrough", "{connections:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_is_relayed_only_where_tcp_allow_says() {
    let up = Upstreams::start().await;
    let setup = Setup {
        policy: PolicyConfig {
            passthrough: Vec::new(),
            tcp_allow: vec![format!("127.0.0.1/32:{}", up.tcp.port())],
        },
        ..Setup::default()
    };
    let gw = Gateway::start(setup, &up).await;
    let mut allowed = gw.connect(up.tcp).await;
    allowed.write_all(b"\x00\x01opaque bytes").await.unwrap();
    let mut echoed = [0u8; 14];
    allowed.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"\x00\x01opaque bytes");
    drop(allowed);
    // The same bytes toward a port no rule names are refused: the connection closes with
    // nothing relayed.
    let mut refused = gw.connect(up.http).await;
    refused.write_all(b"\x00\x01opaque bytes").await.unwrap();
    let mut rest = Vec::new();
    let _ = refused.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "nothing relayed: {rest:?}");
    let connections = gw.records("connection", 2);
    let modes: Vec<_> = connections
        .iter()
        .map(|c| (c["mode"].clone(), c["decision"].clone()))
        .collect();
    assert!(
        modes.contains(&("relay".into(), "allow".into())),
        "{modes:?}"
    );
    assert!(
        modes.contains(&("refused".into(), "deny".into())),
        "{modes:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_destinations_and_strangers_are_refused_and_audited() {
    let up = Upstreams::start().await;
    let closed = Setup {
        allow_loopback: false,
        ..Setup::default()
    };
    let gw = Gateway::start(closed, &up).await;
    if let Ok(mut internal) = gw.try_connect(up.http).await {
        let _ = internal
            .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
            .await;
        let mut rest = Vec::new();
        let _ = internal.read_to_end(&mut rest).await;
        assert!(
            rest.is_empty(),
            "nothing answered: {}",
            String::from_utf8_lossy(&rest)
        );
    }
    // A client the table does not know (not redirected by the kernel) is refused too.
    if let Ok(mut stranger) = tokio::net::TcpStream::connect(gw.addr).await {
        let _ = stranger
            .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
            .await;
        let mut rest = Vec::new();
        let _ = stranger.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "nothing answered a stranger");
    }
    let connections = gw.records("connection", 2);
    let reasons: Vec<String> = connections
        .iter()
        .map(|c| c["reason"].to_string())
        .collect();
    assert!(
        connections.iter().all(|c| c["decision"] == "deny"),
        "{connections:?}"
    );
    // Even a connection nobody can identify has an id in its record.
    let ids: std::collections::BTreeSet<&str> = connections
        .iter()
        .filter_map(|c| c["conn"].as_str())
        .collect();
    assert_eq!(ids.len(), connections.len(), "{connections:?}");
    assert!(
        reasons.iter().any(|r| r.contains("loopback")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no capture record")),
        "{reasons:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_sni_is_refused_without_a_leaf() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    // An IP-literal server name sends no SNI (RFC 6066).
    let tls = gw.connect_tls(up.https, "127.0.0.1", &[b"http/1.1"]).await;
    assert!(
        tls.is_err(),
        "no leaf is minted for a connection without SNI"
    );
    let connections = gw.records("connection", 1);
    assert_eq!(connections[0]["decision"], "deny");
    assert!(
        connections[0]["reason"].to_string().contains("without SNI"),
        "{connections:?}"
    );
    gw.stop().await;
}

/// A WebSocket tunnel that never ends is stopped with its connection when the drain gives
/// up on it (after the grace period), not left running on a detached task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_stops_websocket_tunnels_with_their_connection() {
    let up = Upstreams::start().await;
    let (ws, on_close) = websocket_upstream().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let mut client = gw.connect(ws).await;
    client
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    client.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "{}", String::from_utf8_lossy(&head));
    // A tunnel left running would also hold the audit log open, so stopping would hang.
    tokio::time::timeout(std::time::Duration::from_secs(30), gw.stop())
        .await
        .expect("the gateway did not stop: a tunnel outlived the drain");
    tokio::time::timeout(std::time::Duration::from_secs(10), on_close)
        .await
        .expect("the tunnel to the upstream was left open after the drain")
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.read_to_end(&mut rest),
    )
    .await
    .expect("the tunnel to the sandbox was left open after the drain");
    assert!(read.is_ok() || rest.is_empty(), "{read:?}");
}

/// A sandbox that reaches ever new names holds a bounded number of idle upstream
/// connections (the least recently used pool is dropped with its connections) and a
/// bounded leaf cache, where each name would otherwise keep both until they time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ever_new_names_hold_bounded_upstream_connections_and_leaves() {
    let up = Upstreams::start().await;
    let setup = Setup {
        pooled_hosts: 3,
        leaf_cache_size: 5,
        ..Setup::default()
    };
    let gw = Gateway::start(setup, &up).await;
    for i in 0..12 {
        let name = format!("n{i}.example.test");
        let (status, body) = get_root_over_http1(&gw, &up, &name).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.starts_with(&format!("GET {name} / 0")), "{body}");
    }
    let open = up.https_open_at_most(3).await;
    assert!(
        open <= 3,
        "12 names left {open} upstream connections open, 3 pools kept"
    );
    let cache = gw.leaf_cache();
    assert_eq!((cache.entries, cache.misses, cache.evictions), (5, 12, 7));
    // A name whose pool and leaf were dropped is served again from scratch.
    let (status, body) = get_root_over_http1(&gw, &up, "n0.example.test").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.leaf_cache().misses, 13);
    gw.stop().await;
}

/// An idle pooled upstream connection is closed once `pool_idle_timeout` passes, and a later
/// request to the same name is served over a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_close_after_the_pool_idle_timeout() {
    let up = Upstreams::start().await;
    let setup = Setup {
        pool_idle_timeout: std::time::Duration::from_millis(200),
        ..Setup::default()
    };
    let gw = Gateway::start(setup, &up).await;
    for round in 0..2 {
        let (status, body) = get_root_over_http1(&gw, &up, "idle.example.test").await;
        assert_eq!(status, 200, "round {round}: {body}");
        let open = up.https_open_at_most(0).await;
        assert_eq!(
            open, 0,
            "round {round}: the idle upstream connection stayed open"
        );
    }
    gw.stop().await;
}
