//! Parking, driven over an in-memory stream on a paused clock: what a client of a parked
//! connection notices (nothing, except less memory held), and what a client trying to keep
//! a connection open forever or to lose a response meets.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::{Duration, sleep};

use super::*;

/// Longer than any park: two check periods and then some.
const QUIET: Duration = Duration::from_secs(1);
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `server` as the intercept engine would, with a service that answers `/slow`
/// after 5 s, `/big` with 64 KiB and anything else with the request's number; counting
/// requests and answers the way the audit guard does.
fn serve<IO>(server: IO) -> (Arc<ConnCounters>, JoinHandle<Option<String>>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counters = Arc::new(ConnCounters::default());
    let service = service_fn({
        let counters = counters.clone();
        move |request: hyper::Request<Incoming>| {
            let counters = counters.clone();
            Box::pin(async move {
                let n = counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
                let body = match request.uri().path() {
                    "/slow" => {
                        sleep(Duration::from_secs(5)).await;
                        Bytes::from(format!("{n}"))
                    }
                    "/big" => Bytes::from(vec![b'x'; 64 * 1024]),
                    _ => Bytes::from(format!("{n}")),
                };
                counters.count_answer();
                let body: BoxBody = Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                Ok::<_, Infallible>(hyper::Response::new(body))
            })
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let task = tokio::spawn({
        let counters = counters.clone();
        async move { serve_http1(server, &builder, service, &counters, PARK_AFTER).await }
    });
    (counters, task)
}

/// A connection of `capacity` bytes each way, served; its client end.
fn start(capacity: usize) -> (Client, Arc<ConnCounters>, JoinHandle<Option<String>>) {
    let (client, server) = tokio::io::duplex(capacity);
    let (counters, task) = serve(server);
    (Client::new(client), counters, task)
}

/// A stream that, like TLS, takes every write at once and sends it only when flushed.
struct SentOnFlush {
    io: DuplexStream,
    pending: Vec<u8>,
}

impl AsyncRead for SentOnFlush {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SentOnFlush {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while !this.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, &this.pending))?;
            this.pending.drain(..n);
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The client end, with what it read past the last response.
struct Client {
    io: DuplexStream,
    read: Vec<u8>,
}

impl Client {
    fn new(io: DuplexStream) -> Client {
        Client {
            io,
            read: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn get(&mut self, path: &str) -> (String, String) {
        let head = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        self.write(head.as_bytes()).await;
        self.response().await
    }

    /// Reads one response: its head (lowercased) and its body (framed by Content-Length).
    async fn response(&mut self) -> (String, String) {
        let head_end = loop {
            if let Some(end) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.read[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        while self.read.len() < head_end + length {
            self.fill().await;
        }
        let body = String::from_utf8_lossy(&self.read[head_end..head_end + length]).into_owned();
        self.read.drain(..head_end + length);
        (head, body)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a whole response: {:?}", self.read);
        self.read.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_parked_and_serves_the_next_requests_as_before() {
    let (mut client, counters, task) = start(64 * 1024);
    let parks = || counters.parks.load(Ordering::Relaxed);
    let (head, body) = client.get("/one").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "1");
    sleep(QUIET).await;
    assert_eq!(parks(), 1, "parked once idle");
    let (head, body) = client.get("/two").await;
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, "2", "the same connection, the next request");
    // The start of the next head arrives, then nothing: parked with it in hyper's buffer,
    // and the rest completes the same request.
    client.write(b"GET /three HTTP/1.1\r\nHo").await;
    sleep(QUIET).await;
    assert_eq!(parks(), 2);
    client.write(b"st: a\r\n\r\n").await;
    assert_eq!(client.response().await.1, "3");
    // A parked connection woken by the start of a head does not park before answering it.
    sleep(QUIET).await;
    client.write(b"GET /4 HTTP/1.1\r\nHo").await;
    sleep(QUIET).await;
    assert_eq!(parks(), 3);
    client.write(b"st: a\r\n\r\n").await;
    assert_eq!(client.response().await.1, "4");
    // Two pipelined requests after a park are both answered, in order.
    sleep(QUIET).await;
    client
        .write(b"GET /5 HTTP/1.1\r\nHost: a\r\n\r\nGET /6 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert_eq!(client.response().await.1, "5");
    assert_eq!(client.response().await.1, "6");
    assert_eq!(parks(), 4);
    drop(client);
    assert_eq!(task.await.unwrap(), None, "a client closing is no error");
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_or_a_response_not_yet_read_is_never_parked() {
    let (client, server) = tokio::io::duplex(1024);
    let mut client = Client::new(client);
    let (counters, task) = serve(SentOnFlush {
        io: server,
        pending: Vec::new(),
    });
    // The upstream takes 5 s: no park in the meantime, so hyper keeps the connection alive.
    let (head, body) = client.get("/slow").await;
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, "1");
    // A 64 KiB response the client leaves unread, waiting to be flushed: parked now, it
    // would never be sent.
    client.write(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").await;
    sleep(QUIET).await;
    let (head, body) = client.response().await;
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body.len(), 64 * 1024, "the whole body arrived");
    assert_eq!(counters.parks.load(Ordering::Relaxed), 0);
    assert_eq!(client.get("/after").await.1, "3");
    drop(client);
    assert_eq!(task.await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_head_left_unfinished_in_a_parked_connection_still_times_out() {
    let (mut client, counters, task) = start(64 * 1024);
    assert_eq!(client.get("/one").await.1, "1");
    client.write(b"GET /two HTTP/1.1\r\nHo").await;
    // Parking over and over would re-arm the head's timeout for ever; the connection ends.
    let ended = tokio::time::timeout(HEAD_TIMEOUT * 2, task).await;
    let error = ended
        .expect("the head timeout ended the connection")
        .unwrap();
    assert!(
        error.is_some_and(|e| e.contains("timeout")),
        "a timeout error"
    );
    assert_eq!(counters.parks.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_holds_no_http_state_and_is_closed_after_the_idle_limit() {
    let (mut client, counters, task) = start(64 * 1024);
    sleep(IDLE_LIMIT / 2).await;
    // A preconnect's first request, half a limit later, is served as usual.
    assert_eq!(client.get("/one").await.1, "1");
    assert_eq!(counters.parks.load(Ordering::Relaxed), 0);
    drop(client);
    assert_eq!(task.await.unwrap(), None);
    let (mut client, _counters, task) = start(64 * 1024);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(IDLE_LIMIT * 2, client.io.read_to_end(&mut rest)).await;
    assert_eq!(read.expect("closed within the idle limit").unwrap(), 0);
    assert_eq!(task.await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_is_closed_after_the_idle_limit() {
    let (mut client, _counters, task) = start(64 * 1024);
    assert_eq!(client.get("/one").await.1, "1");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(IDLE_LIMIT * 2, client.io.read_to_end(&mut rest)).await;
    assert_eq!(read.expect("closed within the idle limit").unwrap(), 0);
    assert_eq!(
        task.await.unwrap(),
        None,
        "closing an idle connection is no error"
    );
}

/// A stream that, like TLS without close_notify, reports its peer's end as an error.
struct EndIsError<S> {
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for EndIsError<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.get_mut().io).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()))
            }
            other => other,
        }
    }
}

crate::io::write_through!(EndIsError, io);

#[tokio::test(start_paused = true)]
async fn a_client_going_away_between_requests_is_a_clean_close_not_an_error() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let mut client = Client::new(client);
    let (counters, task) = serve(EndIsError { io: server });
    assert_eq!(client.get("/one").await.1, "1");
    sleep(QUIET).await;
    assert_eq!(counters.parks.load(Ordering::Relaxed), 1);
    drop(client);
    assert_eq!(
        task.await.unwrap(),
        None,
        "as hyper treats an end between requests"
    );
}
