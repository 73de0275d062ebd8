//! Failures answered readably: bad upstream certificates, refused and silent upstreams,
//! misdirected requests, smuggling attempts, and `reject_tls`.

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use tests::upstream;
use tests::{NetLab, TestCa, addrs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{Client, HOST, full, text, tls};
use super::far;
use super::harness::{Engine, Mode};

/// Sends one GET through an engine forwarding to `dest`; returns status and body.
async fn get_via(lab: &NetLab, ca: &TestCa, dest: SocketAddr, h2: bool) -> (u16, String) {
    let engine = Engine::start_with(lab, ca, dest, Mode::Tls, Duration::from_secs(2));
    let mut client = Client::connect(lab, &engine, h2).await;
    let response = client.send(Request::get("/").body(full("")).unwrap()).await;
    let status = response.status().as_u16();
    let body = text(response).await;
    let records = engine.wait_audit(1);
    assert_eq!(records[0]["decision"], "error", "{records:?}");
    assert_eq!(records[0]["status"], status);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_502_or_504_with_readable_bodies() {
    let lab = NetLab::new("si").unwrap();
    let ca = TestCa::new().unwrap();
    let rogue = TestCa::rogue().unwrap();
    let rogue_up = upstream::https(&ca)
        .cert(rogue.issue(&[HOST]).unwrap())
        .route("/", "never")
        .start(&lab, far(0))
        .unwrap();
    let (status, body) = get_via(&lab, &ca, rogue_up.addr(), false).await;
    assert_eq!(status, 502);
    assert!(
        body.contains(&format!("upstream certificate for {HOST} is not valid")),
        "{body}"
    );
    assert!(body.contains("UnknownIssuer"), "{body}");

    let wrong_name = upstream::https(&ca)
        .cert(ca.issue(&["other.example.test"]).unwrap())
        .route("/", "never")
        .start(&lab, far(0))
        .unwrap();
    let (status, body) = get_via(&lab, &ca, wrong_name.addr(), true).await;
    assert_eq!(status, 502);
    assert!(body.contains("not valid"), "{body}");
    assert!(body.contains("not valid for name"), "{body}");

    let refusing = upstream::refusing(&lab, addrs::HOST_C.into()).unwrap();
    let (status, body) = get_via(&lab, &ca, refusing.addr(), false).await;
    assert_eq!(status, 502);
    assert!(body.contains("refused"), "{body}");

    let blackhole = SocketAddr::new(addrs::BLACKHOLE_V4.into(), 443);
    let (status, body) = get_via(&lab, &ca, blackhole, false).await;
    assert_eq!(status, 504);
    assert!(body.contains("timed out"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_must_match_sni() {
    let lab = NetLab::new("si").unwrap();
    let ca = TestCa::new().unwrap();
    let up = upstream::https(&ca)
        .hostname(HOST)
        .echo()
        .start(&lab, far(0))
        .unwrap();
    let engine = Engine::start(&lab, &ca, up.addr(), Mode::Tls);
    for h2 in [false, true] {
        let mut client = Client::connect(&lab, &engine, h2).await;
        let request = if h2 {
            Request::get("https://evil.example.test/")
                .body(full(""))
                .unwrap()
        } else {
            Request::get("/")
                .header("host", "evil.example.test")
                .body(full(""))
                .unwrap()
        };
        let response = client.send(request).await;
        assert_eq!(response.status(), 421, "h2 {h2}");
        let body = text(response).await;
        assert!(
            body.contains("evil.example.test") && body.contains(HOST),
            "{body}"
        );
        // Same host with another case, a port and a trailing dot is fine.
        let request = Request::get("/")
            .header("host", "API.example.test.:443")
            .body(full(""))
            .unwrap();
        assert_eq!(client.send(request).await.status(), 200, "h2 {h2}");
    }
    assert!(
        up.requests()
            .iter()
            .all(|r| !format!("{:?}", r.headers).contains("evil"))
    );
}

/// Raw HTTP/1.1 bytes over TLS; returns what the engine answered.
async fn raw(lab: &NetLab, engine: &Engine, request: &str) -> String {
    let mut stream = tls(lab, engine, HOST, &[b"http/1.1"]).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_get_400() {
    let lab = NetLab::new("si").unwrap();
    let ca = TestCa::new().unwrap();
    let up = upstream::https(&ca)
        .hostname(HOST)
        .echo()
        .start(&lab, far(0))
        .unwrap();
    let engine = Engine::start(&lab, &ca, up.addr(), Mode::Tls);
    let cases = [
        (
            "CL then TE",
            "POST / HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE then CL",
            "POST / HTTP/1.1\r\nHost: api.example.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "conflicting CL",
            "POST / HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "second request smuggled after a clean one",
            "GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\nPOST / HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (name, request) in cases {
        let answer = raw(&lab, &engine, request).await;
        let last = answer.rsplit("HTTP/1.1 ").next().unwrap_or_default();
        eprintln!("{name}: {:?}", answer.lines().next());
        assert!(last.starts_with("400"), "{name}: {answer}");
    }
    let posts = up.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 0, "no smuggled request reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_tls_answers_403_with_the_reason() {
    let lab = NetLab::new("si").unwrap();
    let ca = TestCa::new().unwrap();
    let reason = "api.example.test is not in this session's allow list";
    let engine = Engine::start(&lab, &ca, far(443), Mode::Reject(reason.into()));
    let port = engine.addr.port();
    let out = lab
        .exec_in_node("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(&engine.sluice_ca_pem)
        .args(["--resolve", &format!("{HOST}:{port}:{}", engine.addr.ip())])
        .arg(format!("https://{HOST}:{port}/v1/chat"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(reason), "{stdout}");
    assert!(stdout.trim_end().ends_with("403"), "{stdout}");
}
