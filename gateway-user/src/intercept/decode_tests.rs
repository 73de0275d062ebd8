use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
use http::HeaderValue;
use http_body_util::StreamBody;
use tokio::io::AsyncReadExt;

use super::*;

async fn compress(coding: Coding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let read = match coding {
        Coding::Gzip => GzipEncoder::new(data).read_to_end(&mut out).await,
        Coding::Deflate => ZlibEncoder::new(data).read_to_end(&mut out).await,
        Coding::Brotli => BrotliEncoder::new(data).read_to_end(&mut out).await,
        Coding::Zstd => ZstdEncoder::new(data).read_to_end(&mut out).await,
    };
    read.unwrap();
    out
}

/// A body of `data` cut into `size`-byte frames, then `trailers` if any.
fn frames(data: &[u8], size: usize, trailers: Option<HeaderMap>) -> BoxBody {
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = data
        .chunks(size.max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    if let Some(trailers) = trailers {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

/// (Content-Encoding values, the coding or a piece of the refusal).
type Case = (
    &'static [&'static str],
    Result<Option<Coding>, &'static str>,
);

#[test]
fn content_encoding_table() {
    let cases: [Case; 12] = [
        (&[], Ok(None)),
        (&["identity"], Ok(None)),
        (&["gzip"], Ok(Some(Coding::Gzip))),
        (&["X-Gzip"], Ok(Some(Coding::Gzip))),
        (&["deflate"], Ok(Some(Coding::Deflate))),
        (&["br"], Ok(Some(Coding::Brotli))),
        (&[" zstd "], Ok(Some(Coding::Zstd))),
        (&["identity, gzip"], Ok(Some(Coding::Gzip))),
        (&["compress"], Err("`compress`")),
        (&["gzip, br"], Err("several times (gzip, br)")),
        (&["gzip", "gzip"], Err("several times (gzip, gzip)")),
        (&["aes128gcm"], Err("cannot decode")),
    ];
    for (values, want) in cases {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CONTENT_ENCODING, HeaderValue::from_static(value));
        }
        match (coding(&headers), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{values:?}"),
            (Err(error), Err(text)) => {
                let error = error.to_string();
                assert!(error.contains(text), "{values:?}: {error}");
                assert!(error.contains("refused"), "{values:?}: {error}");
            }
            (got, want) => panic!("{values:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn every_coding_decodes_at_every_frame_size_and_keeps_trailers() {
    let plain: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
        let packed = compress(coding, &plain).await;
        for size in [1, 7, 4096, packed.len()] {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let body = decoded(frames(&packed, size, Some(trailers)), coding);
            let collected = body.collect().await.unwrap();
            assert_eq!(
                collected.trailers().unwrap()["grpc-status"],
                "0",
                "{coding:?}"
            );
            assert!(
                collected.to_bytes() == plain,
                "{coding:?} in {size}-byte frames"
            );
        }
    }
}

#[tokio::test]
async fn a_body_that_does_not_decode_fails_instead_of_passing() {
    let plain = b"not compressed at all, whatever the header says".repeat(10);
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
        let body = decoded(frames(&plain, 16, None), coding);
        let error = first_frame(body).await.err().unwrap_or_else(|| {
            panic!("{coding:?}: a plain body decoded");
        });
        let text = error.to_string();
        assert!(
            text.contains(coding.name()) && text.contains("refused"),
            "{text}"
        );
        // A stream cut short fails too.
        let packed = compress(coding, &plain).await;
        let cut = &packed[..packed.len() / 2];
        let collected = decoded(frames(cut, 8, None), coding).collect().await;
        assert!(collected.is_err(), "{coding:?}: a truncated stream decoded");
    }
}

#[tokio::test]
async fn the_first_frame_is_put_back() {
    let body = first_frame(frames(b"abcdef", 2, None)).await.unwrap();
    assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcdef");
    let empty = first_frame(frames(b"", 1, None)).await.unwrap();
    assert!(empty.collect().await.unwrap().to_bytes().is_empty());
}
