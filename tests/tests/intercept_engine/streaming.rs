//! Streaming through interception: gRPC trailers, SSE timing, WebSocket, big bodies.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use sha2::Digest;
use tests::upstream::{self, EchoReport, SseEvent, pattern_sha256};
use tests::{NetLab, TestCa};
use tokio_tungstenite::tungstenite::Message;

use super::client::{Client, HOST, full, text, tls};
use super::far;
use super::harness::{Engine, Mode};

fn lab_with(
    build: impl FnOnce(upstream::HttpUpstream) -> upstream::HttpUpstream,
) -> (NetLab, TestCa, upstream::RunningUpstream) {
    let lab = NetLab::new("si").unwrap();
    let ca = TestCa::new().unwrap();
    let up = build(upstream::https(&ca).hostname(HOST))
        .start(&lab, far(0))
        .unwrap();
    (lab, ca, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_trailers_pass_h2_to_h2() {
    let (lab, ca, up) = lab_with(|u| u.trailers("/grpc"));
    let engine = Engine::start(&lab, &ca, up.addr(), Mode::Tls);
    let mut client = Client::connect(&lab, &engine, true).await;
    let request = Request::post("/grpc")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(&b"\0\0\0\0\0"[..]))
        .unwrap();
    let response = client.send(request).await;
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrived");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert!(collected.to_bytes().ends_with(b"fake grpc reply"));
}

/// Reads an SSE response; returns (seq, microseconds from upstream send to arrival).
async fn sse_delays(client: &mut Client) -> Vec<(u64, u64)> {
    let response = client
        .send(Request::get("/events").body(full("")).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut pending, mut delays) = (String::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        let now = SseEvent::now_us();
        if let Ok(data) = frame.unwrap().into_data() {
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                let parsed = event.lines().find_map(SseEvent::parse).expect("event");
                delays.push((parsed.seq, now.saturating_sub(parsed.sent_us)));
            }
        }
    }
    delays
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_arrive_one_by_one() {
    for upstream_h2 in [true, false] {
        let (lab, ca, up) = lab_with(|u| {
            u.h2(upstream_h2)
                .sse("/events", 20, Duration::from_millis(50))
        });
        let engine = Engine::start(&lab, &ca, up.addr(), Mode::Tls);
        for h2 in [false, true] {
            let direct_h2 = h2 && upstream_h2;
            let direct =
                sse_delays(&mut Client::direct(&lab, up.addr(), &ca, direct_h2).await).await;
            let delays = sse_delays(&mut Client::connect(&lab, &engine, h2).await).await;
            assert_eq!(delays.len(), 20, "h2 {h2}");
            let worst = |d: &[(u64, u64)]| d.iter().map(|d| d.1).max().unwrap();
            eprintln!(
                "SSE client h2={h2} upstream h2={upstream_h2}: worst per-event delay {} us via sluice, {} us direct",
                worst(&delays),
                worst(&direct)
            );
            // Events are sent 50 ms apart: each must arrive well within that (no coalescing).
            assert!(delays.iter().all(|d| d.1 < 25_000), "held back: {delays:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_upgrade() {
    let (lab, ca, up) = lab_with(|u| u.h2(false).websocket_echo("/ws"));
    let engine = Engine::start(&lab, &ca, up.addr(), Mode::Tls);
    let stream = tls(&lab, &engine, HOST, &[b"http/1.1"]).await;
    let (mut ws, response) = tokio_tungstenite::client_async(format!("wss://{HOST}/ws"), stream)
        .await
        .expect("websocket handshake through sluice");
    assert_eq!(response.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    let blob = vec![42u8; 200_000];
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &blob[..]
    );
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    let records = engine.wait_audit(1);
    assert_eq!(records[0]["status"], 101);
    assert_eq!(records[0]["protocol"], "http/1.1>websocket");
    assert!(
        records[0]["bytes_up"].as_u64().unwrap() > 200_000,
        "{records:?}"
    );
    assert!(
        records[0]["bytes_down"].as_u64().unwrap() > 200_000,
        "{records:?}"
    );
    assert!(records[0].get("reason").is_none(), "{records:?}");
    let connections = engine.wait_connections(1);
    let connection = &connections[0];
    assert_eq!(connection["mode"], "intercept", "{connection}");
    assert_eq!(connection["decision"], "allow", "{connection}");
    assert!(
        connection["bytes_down"].as_u64().unwrap() > 200_000,
        "{connection}"
    );
    // The one request record is tied to its connection's record.
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["conn"], connection["conn"]);
    assert_eq!(records[0]["request"], 1);
}

/// Peak resident memory of this process so far, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 256 MiB in debug builds, 1 GiB in release (or `SLUICE_BIG_BYTES`).
fn big_size() -> u64 {
    std::env::var("SLUICE_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            256 << 20
        } else {
            1 << 30
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_download_and_upload_stream_with_flat_memory() {
    let n = big_size();
    let (lab, ca, up) = lab_with(|u| u.bytes("/big", n).sink("/sink"));
    let engine = Engine::start(&lab, &ca, up.addr(), Mode::Tls);
    for h2 in [false, true] {
        let before = vm_hwm_kib();
        let mut client = Client::connect(&lab, &engine, h2).await;
        let started = Instant::now();
        let response = client
            .send(Request::get("/big").body(full("")).unwrap())
            .await;
        let mut body = response.into_body();
        let mut hasher = sha2::Sha256::new();
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                got += data.len() as u64;
                hasher.update(&data);
            }
        }
        let down = started.elapsed();
        assert_eq!(got, n);
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, pattern_sha256(n));

        let started = Instant::now();
        let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
            (offset < n).then(|| {
                let len = (n - offset).min(64 * 1024);
                let data = Bytes::from(tests::upstream::pattern(offset, len as usize));
                (Ok::<_, Infallible>(Frame::data(data)), offset + len)
            })
        });
        let request = Request::post("/sink")
            .header("content-length", n)
            .body(StreamBody::new(chunks).boxed_unsync())
            .unwrap();
        let report = EchoReport::parse(text(client.send(request).await).await.as_bytes()).unwrap();
        let upload = started.elapsed();
        assert_eq!(report.body_len, n);
        assert_eq!(report.body_sha256, pattern_sha256(n));
        let growth = vm_hwm_kib().saturating_sub(before);
        eprintln!(
            "BIG h2={h2} {} MiB: download {:.2?} ({:.0} MiB/s), upload {:.2?} ({:.0} MiB/s), VmHWM growth {} KiB",
            n >> 20,
            down,
            (n >> 20) as f64 / down.as_secs_f64(),
            upload,
            (n >> 20) as f64 / upload.as_secs_f64(),
            growth
        );
        assert!(
            growth < 128 * 1024,
            "peak RSS grew by {growth} KiB: bodies buffered?"
        );
    }
}
