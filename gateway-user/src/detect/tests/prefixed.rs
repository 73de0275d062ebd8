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
