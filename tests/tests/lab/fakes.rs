//! Tests of the fake upstreams, driven from the node namespace (curl and in-process clients).

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tests::addrs::{self, FAR_HOST, FAR_HOST_V6, HOST_A, HOST_B, HOST_C, HOST_V6_A};
use tests::upstream::{self, EchoReport, SseEvent};
use tests::{NetLab, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::{curl, sa, stdout};

#[test]
fn http_upstream_on_host_a_serves_the_node() {
    let lab = NetLab::new("sl").unwrap();
    let up = upstream::http()
        .route("/", "hello")
        .status("/teapot", 418, "short")
        .start(&lab, sa(HOST_A, 80))
        .unwrap();
    assert_eq!(up.url("/x"), "http://198.51.100.10:80/x");
    let out = curl(&lab, &[&up.url("/")]);
    assert_eq!(stdout(&out), "hello", "{out:?}");
    let out = curl(
        &lab,
        &["-o", "/dev/null", "-w", "%{http_code}", &up.url("/teapot")],
    );
    assert_eq!(stdout(&out), "418");
    let out = curl(
        &lab,
        &["-o", "/dev/null", "-w", "%{http_code}", &up.url("/missing")],
    );
    assert_eq!(stdout(&out), "404");
    let requests = up.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].method, http::Method::GET);
    assert_eq!(requests[0].uri.path(), "/");
    assert_eq!(requests[0].peer.ip(), IpAddr::V4(addrs::NODE_V4));
    assert_eq!(
        requests[1]
            .headers
            .get("user-agent")
            .map(|v| v.as_bytes().starts_with(b"curl/")),
        Some(true)
    );
}

#[test]
fn https_upstream_on_far_host_with_test_ca_and_h2() {
    let lab = NetLab::new("sl").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let cacert = ca_file.to_str().unwrap();
    let h2 = upstream::https(&ca)
        .route("/", "secure")
        .hostname("api.example.test")
        .start(&lab, sa(FAR_HOST, 443))
        .unwrap();
    let h1 = upstream::https(&ca)
        .route("/", "old")
        .h2(false)
        .start(&lab, sa(FAR_HOST, 8443))
        .unwrap();

    let out = curl(
        &lab,
        &[
            "--cacert",
            cacert,
            "--http2",
            "-w",
            " %{http_version}",
            &h2.url("/"),
        ],
    );
    assert_eq!(stdout(&out), "secure 2", "{out:?}");
    let out = curl(
        &lab,
        &[
            "--cacert",
            cacert,
            "--http2",
            "-w",
            " %{http_version}",
            &h1.url("/"),
        ],
    );
    assert_eq!(stdout(&out), "old 1.1", "{out:?}");

    let resolve = format!("api.example.test:443:{FAR_HOST}");
    let out = curl(
        &lab,
        &[
            "--cacert",
            cacert,
            "--resolve",
            &resolve,
            "https://api.example.test/",
        ],
    );
    assert_eq!(stdout(&out), "secure", "{out:?}");
    let last = h2.requests().pop().unwrap();
    assert_eq!(last.sni.as_deref(), Some("api.example.test"));
    assert_eq!(last.alpn.as_deref(), Some("h2"));
    assert_eq!(last.version, http::Version::HTTP_2);

    // A CA nobody trusts, an expired leaf and a wrong name all fail verification (exit 60).
    let rogue = TestCa::rogue().unwrap();
    let bad_certs = [
        rogue.issue(&[&HOST_B.to_string()]).unwrap(),
        ca.issue_expired(&[&HOST_B.to_string()]).unwrap(),
        ca.issue(&["wrong.example.test"]).unwrap(),
    ];
    for (i, cert) in bad_certs.into_iter().enumerate() {
        let bad = upstream::https(&ca)
            .cert(cert)
            .route("/", "bad")
            .start(&lab, sa(HOST_B, 0))
            .unwrap();
        let out = curl(&lab, &["--cacert", cacert, &bad.url("/")]);
        assert_eq!(out.status.code(), Some(60), "case {i}: {out:?}");
        assert!(bad.requests().is_empty());
    }
}

#[test]
fn echo_reports_method_headers_and_body_sha256() {
    let lab = NetLab::new("sl").unwrap();
    let up = upstream::http()
        .echo()
        .sink("/upload")
        .start(&lab, sa(HOST_C, 8080))
        .unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&body).unwrap();
    let data = format!("@{}", file.path().display());
    let out = curl(
        &lab,
        &[
            "-X",
            "PUT",
            "-H",
            "X-Test: yes",
            "--data-binary",
            &data,
            &up.url("/some/path?q=1"),
        ],
    );
    let report = EchoReport::parse(&out.stdout).unwrap();
    assert_eq!(report.method, "PUT");
    assert_eq!(
        (report.path.as_str(), report.query.as_deref()),
        ("/some/path", Some("q=1"))
    );
    assert_eq!(report.header("x-test"), Some("yes"));
    assert_eq!(report.body_len, body.len() as u64);
    assert_eq!(report.body_sha256, upstream::sha256_hex(&body));
    assert_eq!(report.authority.as_deref(), Some("198.51.100.12:8080"));
    assert!(!report.tls && report.body_error.is_none());

    let out = curl(&lab, &["--data-binary", &data, &up.url("/upload")]);
    assert_eq!(
        EchoReport::parse(&out.stdout).unwrap().body_sha256,
        upstream::sha256_hex(&body)
    );
}

#[test]
fn sse_events_arrive_spaced_and_flushed() {
    let lab = NetLab::new("sl").unwrap();
    let interval = Duration::from_millis(200);
    let up = upstream::http()
        .sse("/events", 5, interval)
        .start(&lab, sa(HOST_A, 80))
        .unwrap();
    let mut child = lab
        .exec_in_node("curl")
        .args(["-sSN", "--max-time", "10", &up.url("/events")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut arrivals = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(event) = SseEvent::parse(&line.unwrap()) {
            arrivals.push((Instant::now(), SseEvent::now_us(), event));
        }
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(
        arrivals.iter().map(|(_, _, e)| e.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= interval / 2, "events not spaced: {gap:?}");
        assert!(pair[1].2.sent_us - pair[0].2.sent_us >= 150_000);
    }
    for (_, received_us, event) in &arrivals {
        // Each event is flushed on its own: it arrives soon after it was sent.
        assert!(
            received_us.saturating_sub(event.sent_us) < 150_000,
            "{event:?} late"
        );
    }
}

#[test]
fn bytes_route_streams_the_pattern() {
    let lab = NetLab::new("sl").unwrap();
    let n = 3 * 1024 * 1024 + 17;
    let up = upstream::http()
        .bytes("/big", n)
        .start(&lab, sa(HOST_A, 80))
        .unwrap();
    let out = curl(&lab, &[&up.url("/big")]);
    assert_eq!(out.stdout.len() as u64, n);
    assert_eq!(
        upstream::sha256_hex(&out.stdout),
        upstream::pattern_sha256(n)
    );
    assert_eq!(out.stdout[1000..1010], upstream::pattern(1000, 10));
}

#[test]
fn ipv6_hosts_are_reachable() {
    let lab = NetLab::new("sl").unwrap();
    let near = upstream::http()
        .route("/", "v6")
        .start(&lab, sa(HOST_V6_A, 80))
        .unwrap();
    let far = upstream::http()
        .route("/", "far6")
        .start(&lab, sa(FAR_HOST_V6, 80))
        .unwrap();
    assert_eq!(near.url("/"), "http://[2001:db8:1::10]:80/");
    assert_eq!(stdout(&curl(&lab, &["-g", &near.url("/")])), "v6");
    assert_eq!(stdout(&curl(&lab, &["-g", &far.url("/")])), "far6");
}

#[tokio::test]
async fn grpc_trailers_over_h2_in_process_client() {
    let lab = NetLab::new("sl").unwrap();
    let ca = TestCa::new().unwrap();
    let up = upstream::https(&ca)
        .trailers("/pkg.Svc/Call")
        .start(&lab, sa(FAR_HOST, 443))
        .unwrap();
    let tcp = lab.connect_from_node(up.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"h2"]).unwrap());
    let server_name = rustls_pki_types::ServerName::from(IpAddr::V4(FAR_HOST));
    let tls = connector.connect(server_name, tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let request = http::Request::post(up.url("/pkg.Svc/Call"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "ok");
        assert_eq!(collected.to_bytes()[0], 0);
    }
    let requests = up.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].connection, requests[1].connection,
        "one h2 connection"
    );
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn websocket_echo_roundtrip() {
    let lab = NetLab::new("sl").unwrap();
    let up = upstream::http()
        .websocket_echo("/ws")
        .start(&lab, sa(HOST_B, 80))
        .unwrap();
    let tcp = lab.connect_from_node(up.addr()).await.unwrap();
    let url = format!("ws://{}/ws", up.addr());
    let (mut ws, response) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("ping?")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping?"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.unwrap();
    let out = curl(
        &lab,
        &["-o", "/dev/null", "-w", "%{http_code}", &up.url("/ws")],
    );
    assert_eq!(stdout(&out), "400", "plain GET is refused");
}

#[tokio::test]
async fn tcp_echo_recorder_refusing_and_blackhole() {
    let lab = NetLab::new("sl").unwrap();
    let echo = upstream::tcp_echo()
        .banner("220 hi\r\n")
        .start(&lab, sa(HOST_A, 2525))
        .unwrap();
    let mut stream = lab.connect_from_node(echo.addr()).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 13];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"220 hi\r\nhello");
    drop(stream);

    let recorder = upstream::tcp_recorder(8)
        .reply("bye")
        .start(&lab, sa(HOST_C, 0))
        .unwrap();
    let mut stream = lab.connect_from_node(recorder.addr()).await.unwrap();
    stream
        .write_all(b"\x16\x03\x01first-bytes-and-more")
        .await
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"bye");
    // Blocking here is fine: every fake runs on its own thread and runtime.
    let seen = recorder.wait_closed(1, Duration::from_secs(5));
    assert_eq!(seen[0].first_bytes, b"\x16\x03\x01first");
    assert_eq!(seen[0].peer.ip(), IpAddr::V4(addrs::NODE_V4));
    assert_eq!(echo.connections()[0].total_bytes, 5);

    let refused = upstream::refusing(&lab, HOST_B.into()).unwrap();
    let err = lab.connect_from_node(refused.addr()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    let blackhole = tokio::time::timeout(
        Duration::from_millis(300),
        lab.connect_from_node(sa(addrs::BLACKHOLE_V4, 443)),
    )
    .await;
    assert!(blackhole.is_err(), "blackhole answered: {blackhole:?}");
}
