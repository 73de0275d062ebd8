//! The interception engine end to end (root only): an in-process engine in the lab's node
//! namespace, in-process clients trusting Sluice's CA, fake upstreams in the net namespace.

#![expect(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

#[path = "intercept_engine/client.rs"]
mod client;
#[path = "intercept_engine/failures.rs"]
mod failures;
#[path = "intercept_engine/harness.rs"]
mod harness;
#[path = "intercept_engine/streaming.rs"]
mod streaming;

use std::net::SocketAddr;

use client::{Client, HOST, full, text};
use harness::{Engine, Mode};
use http::Request;
use tests::upstream::{self, EchoReport, sha256_hex};
use tests::{NetLab, TestCa, addrs};

fn far(port: u16) -> SocketAddr {
    SocketAddr::new(addrs::FAR_HOST.into(), port)
}

/// A lab, a test CA, and an HTTPS echo upstream for [`HOST`] (h2 offered or not).
fn echo_lab(h2: bool) -> (NetLab, TestCa, upstream::RunningUpstream) {
    let lab = NetLab::new("si").unwrap();
    let ca = TestCa::new().unwrap();
    let up = upstream::https(&ca)
        .hostname(HOST)
        .h2(h2)
        .echo()
        .start(&lab, far(0))
        .unwrap();
    (lab, ca, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h2_clients_reach_h1_and_h2_upstreams_intact() {
    for upstream_h2 in [false, true] {
        let (lab, ca, up) = echo_lab(upstream_h2);
        let engine = Engine::start(&lab, &ca, up.addr(), Mode::Tls);
        for client_h2 in [false, true] {
            let mut client = Client::connect(&lab, &engine, client_h2).await;
            let body = vec![7u8; 100_000];
            let request = Request::post("/echo/path?q=1&r=two")
                .header("x-test", "yes")
                .header("authorization", "Bearer placeholder")
                .header("connection", "x-hop")
                .header("x-hop", "dropped")
                .body(full(body.clone()))
                .unwrap();
            let request = if client_h2 {
                let (mut parts, body) = request.into_parts();
                parts.headers.remove("connection");
                parts.headers.remove("x-hop");
                Request::from_parts(parts, body)
            } else {
                request
            };
            let response = client.send(request).await;
            assert_eq!(response.status(), 200, "h2 {client_h2}->{upstream_h2}");
            let report = EchoReport::parse(text(response).await.as_bytes()).unwrap();
            let case = format!("client h2 {client_h2}, upstream h2 {upstream_h2}");
            assert_eq!(report.method, "POST", "{case}");
            assert_eq!(report.path, "/echo/path", "{case}");
            assert_eq!(report.query.as_deref(), Some("q=1&r=two"), "{case}");
            assert_eq!(report.authority.as_deref(), Some(HOST), "{case}");
            assert_eq!(report.header("x-test"), Some("yes"), "{case}");
            assert_eq!(report.header("authorization"), Some("Bearer placeholder"));
            assert_eq!(report.header("x-hop"), None, "{case}: hop-by-hop stripped");
            assert_eq!(report.body_len, 100_000, "{case}");
            assert_eq!(report.body_sha256, sha256_hex(&body), "{case}");
            assert_eq!(report.sni.as_deref(), Some(HOST), "{case}: SNI = host");
            // The upstream is offered what the client spoke: an HTTP/1.1 client gets an
            // HTTP/1.1 upstream connection even where the upstream speaks h2.
            let want = if upstream_h2 && client_h2 {
                "HTTP/2.0"
            } else {
                "HTTP/1.1"
            };
            assert_eq!(report.version, want, "{case}");
        }
        let records = engine.wait_audit(2);
        assert_eq!(records.len(), 2, "{records:?}");
        for record in &records {
            assert_eq!(record["kind"], "request");
            assert_eq!(record["decision"], "allow");
            assert_eq!(record["status"], 200);
            assert_eq!(record["method"], "POST");
            assert_eq!(record["url"], format!("https://{HOST}/echo/path?q=1&r=two"));
            assert_eq!(record["bytes_up"], 100_000);
            let text = record.to_string();
            assert!(!text.contains("placeholder"), "no header values: {text}");
        }
        let protocols: Vec<&str> = records
            .iter()
            .map(|r| r["protocol"].as_str().unwrap())
            .collect();
        let up_name = if upstream_h2 { "h2" } else { "http/1.1" };
        assert_eq!(
            protocols,
            ["http/1.1>http/1.1".to_owned(), format!("h2>{up_name}")]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_intercepted_with_scheme_http() {
    let lab = NetLab::new("si").unwrap();
    let ca = TestCa::new().unwrap();
    let up = upstream::http()
        .h2(false)
        .echo()
        .start(&lab, far(0))
        .unwrap();
    let engine = Engine::start(&lab, &ca, up.addr(), Mode::Http);
    let mut client = Client::plain(&lab, &engine).await;
    let request = Request::get("/plain?x=1")
        .header("host", "plain.example.test:8080")
        .body(full(""))
        .unwrap();
    let response = client.send(request).await;
    assert_eq!(response.status(), 200);
    let report = EchoReport::parse(text(response).await.as_bytes()).unwrap();
    assert!(!report.tls);
    assert_eq!(report.authority.as_deref(), Some("plain.example.test:8080"));
    let records = engine.wait_audit(1);
    assert_eq!(
        records[0]["url"],
        "http://plain.example.test:8080/plain?x=1"
    );
}
