use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::*;

/// Replaces `secret` by `***` (messages only).
#[derive(Debug)]
struct Mask;

impl ResponseFilter for Mask {
    fn headers(&mut self, _: &mut HeaderMap) {}
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        Bytes::copy_from_slice(chunk)
    }
    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }
    fn trailers(&mut self, _: &mut HeaderMap) {}
    fn message(&mut self, message: &[u8]) -> Bytes {
        Bytes::from(String::from_utf8_lossy(message).replace("secret", "***"))
    }
}

#[test]
fn tunnel_decisions() {
    let mut deflate = HeaderMap::new();
    deflate.insert(
        SEC_WEBSOCKET_EXTENSIONS,
        HeaderValue::from_static("permessage-deflate"),
    );
    let plain = HeaderMap::new();
    assert!(matches!(tunnel(None, &plain), Ok(Tunnel::Copy)));
    assert!(matches!(tunnel(None, &deflate), Ok(Tunnel::Copy)));
    assert!(matches!(
        tunnel(Some(Box::new(Mask)), &plain),
        Ok(Tunnel::Relay(_))
    ));
    let refused = tunnel(Some(Box::new(Mask)), &deflate).unwrap_err();
    assert!(matches!(refused, RelayError::Extension));
    assert_eq!(
        refused.to_string(),
        "upstream: upstream negotiated a WebSocket extension the gateway cannot scrub"
    );
}

#[test]
fn every_payload_from_the_upstream_is_scrubbed() {
    let cases = [
        (Message::text("Bearer secret"), Message::text("Bearer ***")),
        (
            Message::binary(&b"\x00secret\xff"[..]),
            Message::binary(Bytes::from(
                String::from_utf8_lossy(b"\x00secret\xff").replace("secret", "***"),
            )),
        ),
        (
            Message::Ping(Bytes::from_static(b"secret")),
            Message::Ping(Bytes::from_static(b"***")),
        ),
        (
            Message::Pong(Bytes::from_static(b"secret")),
            Message::Pong(Bytes::from_static(b"***")),
        ),
        (Message::Close(None), Message::Close(None)),
        (
            Message::Close(Some(CloseFrame {
                code: CloseCode::Library(4001),
                reason: "bad secret".into(),
            })),
            Message::Close(Some(CloseFrame {
                code: CloseCode::Library(4001),
                reason: "bad ***".into(),
            })),
        ),
    ];
    for (from_upstream, to_sandbox) in cases {
        assert_eq!(scrub(&mut Mask, from_upstream).unwrap(), to_sandbox);
    }
}

/// Grows every message tenfold (for the size limits of control frames).
#[derive(Debug)]
struct Grow;

impl ResponseFilter for Grow {
    fn headers(&mut self, _: &mut HeaderMap) {}
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        Bytes::copy_from_slice(chunk)
    }
    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }
    fn trailers(&mut self, _: &mut HeaderMap) {}
    fn message(&mut self, message: &[u8]) -> Bytes {
        Bytes::from(message.repeat(10))
    }
}

#[test]
fn control_payloads_that_outgrow_a_frame_are_emptied() {
    let ping = scrub(&mut Grow, Message::Ping(Bytes::from(vec![b'a'; 20]))).unwrap();
    assert_eq!(ping, Message::Ping(Bytes::new()));
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "a".repeat(20).into(),
    }));
    let Message::Close(Some(frame)) = scrub(&mut Grow, close).unwrap() else {
        panic!("a close stays a close");
    };
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason.as_str(), "");
}

/// A sandbox and an upstream talking through [`relay`] with [`Mask`].
async fn through_relay() -> (
    WebSocketStream<DuplexStream>,
    WebSocketStream<DuplexStream>,
    tokio::task::JoinHandle<Result<(), RelayError>>,
) {
    let (sandbox, client) = tokio::io::duplex(1 << 16);
    let (server, upstream) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(relay(client, server, Box::new(Mask)));
    let big = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let sandbox = WebSocketStream::from_raw_socket(sandbox, Role::Client, Some(big)).await;
    let upstream = WebSocketStream::from_raw_socket(upstream, Role::Server, Some(big)).await;
    (sandbox, upstream, task)
}

#[tokio::test]
async fn messages_down_are_scrubbed_and_messages_up_pass_unchanged() {
    let (mut sandbox, mut upstream, task) = through_relay().await;
    sandbox.send(Message::text("my secret")).await.unwrap();
    assert_eq!(
        upstream.next().await.unwrap().unwrap(),
        Message::text("my secret")
    );
    upstream.send(Message::text("your secret")).await.unwrap();
    assert_eq!(
        sandbox.next().await.unwrap().unwrap(),
        Message::text("your ***")
    );
    // The upstream closes with its own code: the sandbox sees it.
    let bye = CloseFrame {
        code: CloseCode::Library(4000),
        reason: "done".into(),
    };
    upstream
        .send(Message::Close(Some(bye.clone())))
        .await
        .unwrap();
    assert_eq!(
        sandbox.next().await.unwrap().unwrap(),
        Message::Close(Some(bye))
    );
    assert!(sandbox.next().await.is_none());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_sandbox_close_code_reaches_the_upstream() {
    let (mut sandbox, mut upstream, task) = through_relay().await;
    let bye = CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    };
    sandbox
        .send(Message::Close(Some(bye.clone())))
        .await
        .unwrap();
    assert_eq!(
        upstream.next().await.unwrap().unwrap(),
        Message::Close(Some(bye))
    );
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_message_over_the_limit_ends_the_tunnel_with_1009() {
    let (mut sandbox, mut upstream, task) = through_relay().await;
    let big = Message::binary(vec![0u8; MAX_MESSAGE + 1]);
    let sender = tokio::spawn(async move {
        let _ = upstream.send(big).await;
        upstream
    });
    let Message::Close(Some(frame)) = sandbox.next().await.unwrap().unwrap() else {
        panic!("expected a close");
    };
    assert_eq!(frame.code, CloseCode::Size);
    let error = task.await.unwrap().unwrap_err();
    assert!(
        matches!(error, RelayError::TooBig(Side::Upstream)),
        "{error}"
    );
    drop(sender);
}
