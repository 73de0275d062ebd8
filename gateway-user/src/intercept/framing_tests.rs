use super::*;

fn verdicts(stream: &[u8], step: usize) -> Vec<Result<(), CheckError>> {
    let mut tracker = Tracker::default();
    stream.chunks(step).flat_map(|c| tracker.feed(c)).collect()
}

#[test]
fn tracker_table_every_split() {
    let ok = Ok(());
    let both = Err(CheckError::LengthAndChunked);
    let bad_len = Err(CheckError::BadContentLength);
    type Case = (&'static str, &'static str, Vec<Result<(), CheckError>>);
    let cases: Vec<Case> = vec![
        (
            "one get",
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            vec![ok.clone()],
        ),
        (
            "pipelined gets with leading CRLF",
            "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
            vec![ok.clone(), ok.clone()],
        ),
        (
            "fixed body hiding a fake head",
            "POST / HTTP/1.1\r\nContent-Length: 28\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            vec![ok.clone(), ok.clone()],
        ),
        (
            "chunked body with extension and trailers",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            vec![ok.clone(), ok.clone()],
        ),
        (
            "CL then TE",
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            vec![both.clone()],
        ),
        (
            "TE then CL, lowercase",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
            vec![both],
        ),
        (
            "conflicting lengths",
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
            vec![bad_len],
        ),
        (
            "upgrade stops following",
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            vec![ok.clone()],
        ),
        (
            "bare LF heads",
            "GET / HTTP/1.1\nHost: a\n\nGET / HTTP/1.1\n\n",
            vec![ok.clone(), ok],
        ),
    ];
    for (name, stream, want) in cases {
        for step in [1, 2, 3, 7, stream.len()] {
            assert_eq!(
                verdicts(stream.as_bytes(), step),
                want,
                "{name}, step {step}"
            );
        }
    }
}

#[test]
fn head_without_end_is_bounded() {
    let mut tracker = Tracker::default();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..10 {
        assert!(tracker.feed(&chunk).is_empty());
    }
    assert!(matches!(tracker.state, State::Stopped));
    assert!(Verdicts::default().next().is_none());
}
