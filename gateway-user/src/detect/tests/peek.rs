//! The read/classify loop: deadlines under a paused clock, caps, early closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf, duplex};
use tokio::time::Instant;

use super::build::Hello;
use crate::detect::{Detection, Limits, Malformed, Outcome, classify, detect};

/// A reader that hands out `data` at most `chunk` bytes per read, then EOF.
#[derive(Debug)]
pub struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
    pub reads: usize,
}

impl<'a> Trickle<'a> {
    pub fn new(data: &'a [u8], chunk: usize) -> Self {
        Self {
            data,
            chunk,
            reads: 0,
        }
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        self.reads += 1;
        Poll::Ready(Ok(()))
    }
}

/// A reader whose reads fail with `kind`.
struct Failing(io::ErrorKind);

impl AsyncRead for Failing {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.0.into()))
    }
}

async fn detect_bytes(data: &[u8]) -> Outcome {
    detect(&mut Trickle::new(data, 1 << 16), Limits::default())
        .await
        .outcome
}

#[test]
fn detect_classify_table() {
    let hello = Hello::tls13().sni("a.example.test").record();
    let cases: &[(&[u8], Option<&str>)] = &[
        (b"", None),
        (&hello[..20], None),
        (&hello, Some("tls a.example.test")),
        (
            b"GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n",
            Some("http GET a.example.test"),
        ),
        (b"GET / HTTP/1.1\r\nHost: a.example.test\r\n", None),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Some("opaque")),
        (b"\0\0\0\x01", Some("opaque")),
        (&[23, 3, 3, 0, 1, 0], Some("malformed tls")),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            Some("malformed http"),
        ),
    ];
    for (bytes, want) in cases {
        let got = classify(bytes).map(|outcome| match outcome {
            Outcome::Tls(h) => format!(
                "tls {}",
                h.server_name.map(|h| h.to_string()).unwrap_or_default()
            ),
            Outcome::Http1(r) => format!(
                "http {} {}",
                r.method,
                r.host.map(|h| h.authority(r.port)).unwrap_or_default()
            ),
            Outcome::Opaque => "opaque".into(),
            Outcome::Malformed(Malformed::Tls(_)) => "malformed tls".into(),
            Outcome::Malformed(Malformed::Http1(_)) => "malformed http".into(),
            other => format!("{other:?}"),
        });
        assert_eq!(got.as_deref(), *want, "{bytes:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn detect_silent_client_times_out_at_the_deadline() {
    let (_client, mut server) = duplex(1024);
    let start = Instant::now();
    let detection = detect(&mut server, Limits::default()).await;
    assert_eq!(
        detection,
        Detection {
            bytes: Default::default(),
            outcome: Outcome::Timeout
        }
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn detect_partial_hello_then_silence_times_out_keeping_the_bytes() {
    let hello = Hello::tls13().sni("a.example.test").record();
    let (mut client, mut server) = duplex(1024);
    client.write_all(&hello[..30]).await.unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let detection = detect(&mut server, limits).await;
    assert_eq!(detection.outcome, Outcome::Timeout);
    assert_eq!(&detection.bytes[..], &hello[..30]);
}

#[tokio::test(start_paused = true)]
async fn detect_returns_as_soon_as_the_hello_is_complete() {
    let hello = Hello::tls13().sni("a.example.test").record();
    let (mut client, mut server) = duplex(1024);
    client.write_all(&hello).await.unwrap(); // and keeps the connection open
    let start = Instant::now();
    let detection = detect(&mut server, Limits::default()).await;
    assert!(matches!(detection.outcome, Outcome::Tls(_)));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn detect_slow_client_gets_the_whole_deadline_not_more() {
    let hello = Hello::tls13().sni("a.example.test").record();
    let (mut client, mut server) = duplex(1024);
    let writer = tokio::spawn(async move {
        for byte in hello {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(&[byte]).await.unwrap();
        }
        client
    });
    let detection = detect(&mut server, Limits::default()).await;
    assert_eq!(
        (detection.outcome, detection.bytes.len()),
        (Outcome::Timeout, 49)
    );
    writer.abort();
}

#[tokio::test]
async fn detect_client_that_closes_at_once_or_half_way() {
    assert_eq!(detect_bytes(b"").await, Outcome::Closed);
    let hello = Hello::tls13().sni("a.example.test").record();
    let detection = detect(&mut Trickle::new(&hello[..40], 7), Limits::default()).await;
    assert_eq!(
        (detection.outcome, detection.bytes.len()),
        (Outcome::Closed, 40)
    );
    assert_eq!(detect_bytes(b"GET / HT").await, Outcome::Closed);
}

#[tokio::test]
async fn detect_read_error_is_reported() {
    let detection = detect(
        &mut Failing(io::ErrorKind::ConnectionReset),
        Limits::default(),
    )
    .await;
    assert_eq!(
        detection.outcome,
        Outcome::ReadFailed(io::ErrorKind::ConnectionReset)
    );
}

#[tokio::test]
async fn detect_byte_at_a_time_http_and_tls() {
    let request = b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n";
    let mut reader = Trickle::new(request, 1);
    let detection = detect(&mut reader, Limits::default()).await;
    assert_eq!(
        reader.reads,
        request.len(),
        "stops reading at the end of the head"
    );
    let Outcome::Http1(request) = detection.outcome else {
        panic!("{:?}", detection.outcome)
    };
    assert_eq!(
        (
            request.method.as_str(),
            request.host.map(|h| h.authority(request.port)).as_deref()
        ),
        ("CONNECT", Some("api.example.test:443"))
    );

    let hello = Hello::tls13()
        .sni("b.example.test")
        .alpn(&[b"h2"])
        .records(50);
    let mut reader = Trickle::new(&hello, 1);
    let detection = detect(&mut reader, Limits::default()).await;
    assert_eq!(reader.reads, hello.len());
    assert!(matches!(detection.outcome, Outcome::Tls(h) if h.alpn == [b"h2"]));
}

#[tokio::test]
async fn detect_opaque_and_malformed() {
    assert_eq!(
        detect_bytes(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3\r\n").await,
        Outcome::Opaque
    );
    assert_eq!(
        detect_bytes(b"\x00\x00\x00\x2c\x00\x00").await,
        Outcome::Opaque
    );
    let bad = Hello::tls13()
        .sni("a.example.test")
        .sni("b.example.test")
        .record();
    assert!(matches!(
        detect_bytes(&bad).await,
        Outcome::Malformed(Malformed::Tls(_))
    ));
}

#[tokio::test]
async fn detect_caps_what_it_buffers() {
    let hello = Hello::tls13().sni("a.example.test").padding(1000).record();
    let limits = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    let detection = detect(&mut Trickle::new(&hello, 64), limits).await;
    assert_eq!(
        (detection.outcome, detection.bytes.len()),
        (Outcome::TooLarge, 100)
    );

    let huge = Hello::tls13()
        .sni("a.example.test")
        .padding(20_000)
        .records(1 << 14);
    let detection = detect(&mut Trickle::new(&huge, 4096), Limits::default()).await;
    assert_eq!(detection.outcome, Outcome::TooLarge);
    assert!(
        detection.bytes.len() <= 4096,
        "refused on the declared length"
    );

    let endless_header = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 20_000]].concat();
    let detection = detect(&mut Trickle::new(&endless_header, 1000), Limits::default()).await;
    assert_eq!(
        (detection.outcome, detection.bytes.len()),
        (Outcome::TooLarge, 16 * 1024)
    );
}

#[tokio::test]
async fn detect_then_replay_loses_nothing() {
    let hello = Hello::tls13().sni("a.example.test").record();
    let (mut client, mut server) = duplex(4096);
    client
        .write_all(&[hello.as_slice(), b"\x17\x03\x03\x00\x01X"].concat())
        .await
        .unwrap();
    let mut detection = detect(&mut server, Limits::default()).await;
    assert!(matches!(detection.outcome, Outcome::Tls(_)));
    client.write_all(b"after").await.unwrap();
    drop(client);
    let mut replayed = Vec::new();
    detection
        .replay(server)
        .read_to_end(&mut replayed)
        .await
        .unwrap();
    assert_eq!(
        replayed,
        [hello.as_slice(), b"\x17\x03\x03\x00\x01X", b"after"].concat()
    );
}
