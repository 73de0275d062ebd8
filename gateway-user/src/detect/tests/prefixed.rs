//! `Prefixed` replays exactly the peeked bytes, then the stream.

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use crate::detect::Prefixed;

#[tokio::test]
async fn detect_prefixed_replays_prefix_then_stream() {
    let (mut client, server) = duplex(64);
    client.write_all(b" world").await.unwrap();
    drop(client);
    let mut stream = Prefixed::new(Bytes::from_static(b"hello"), server);
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"hello world");
}

#[tokio::test]
async fn detect_prefixed_small_reads_never_mix_prefix_and_stream() {
    let (mut client, server) = duplex(64);
    client.write_all(b"WXYZ").await.unwrap();
    let mut stream = Prefixed::new(Bytes::from_static(b"abcde"), server);
    let mut chunk = [0u8; 3];
    let mut reads = Vec::new();
    for _ in 0..4 {
        let n = stream.read(&mut chunk).await.unwrap();
        reads.push(chunk[..n].to_vec());
    }
    assert_eq!(reads, [&b"abc"[..], b"de", b"WXY", b"Z"]);
    assert!(stream.prefix().is_empty());
}

#[tokio::test]
async fn detect_prefixed_writes_go_to_the_stream() {
    let (mut client, server) = duplex(64);
    let mut stream = Prefixed::new(Bytes::from_static(b"peeked"), server);
    stream.write_all(b"reply").await.unwrap();
    stream.flush().await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"reply");
    let (rest, _inner) = stream.into_parts();
    assert_eq!(rest, Bytes::from_static(b"peeked"));
}

/// An empty prefix may still own a whole buffer (hyper hands over an upgraded connection's
/// drained read buffer that way): it is let go at once, not held for the connection's life.
#[tokio::test]
async fn detect_prefixed_lets_go_of_an_empty_prefix_at_once() {
    struct Owner(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            &[]
        }
    }
    impl Drop for Owner {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_client, server) = duplex(64);
    let stream = Prefixed::new(Bytes::from_owner(Owner(dropped.clone())), server);
    assert!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        "the empty prefix's buffer is still held"
    );
    drop(stream);
}
