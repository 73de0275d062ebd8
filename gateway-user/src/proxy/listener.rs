//! The one accept loop every listener runs (transparent, explicit proxy, control API):
//! bounded concurrency, accept-error backoff, and drain-aware shutdown that tracks every
//! task it spawns. Connections are served on the accepting runtime, or handed to the
//! thread-per-core [`Workers`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::drain::Drain;
use crate::workers::Workers;

/// First pause after a failed accept (e.g. out of file descriptors); doubled on each
/// further failure up to [`MAX_BACKOFF`], reset by a success.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts on `listener` until `drain` stops, handling each connection with `handle` on a
/// task tracked by `drain` (so shutdown waits for it, and aborts it after the grace period).
/// At most `limit` connections are handled at once; further accepts wait. `name` labels
/// the log lines.
pub async fn serve<H, F>(
    listener: TcpListener,
    name: &'static str,
    limit: usize,
    drain: Drain,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    serve_on(listener, name, limit, drain, None, handle).await;
}

/// [`serve`], handing each connection to one of `workers` when given (its socket moves to
/// that worker's runtime before `handle` sees it).
pub async fn serve_on<H, F>(
    listener: TcpListener,
    name: &'static str,
    limit: usize,
    drain: Drain,
    workers: Option<Arc<Workers>>,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let permits = Arc::new(Semaphore::new(limit));
    let stopping = drain.stopping();
    tokio::pin!(stopping);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let permit = tokio::select! {
            () = &mut stopping => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stopping => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = name, %error, pause = ?backoff, "accept failed");
                    tokio::select! {
                        () = &mut stopping => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        backoff = FIRST_BACKOFF;
        let _ = stream.set_nodelay(true);
        let Some(workers) = &workers else {
            let task = handle(stream, peer);
            spawn_until_aborted(&drain, async move {
                let _permit = permit;
                task.await;
            });
            continue;
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(listener = name, %error, "cannot hand the connection to a worker");
                continue;
            }
        };
        let handle = Arc::clone(&handle);
        workers.spawn(&drain, async move {
            let _permit = permit;
            match TcpStream::from_std(stream) {
                Ok(stream) => handle(stream, peer).await,
                Err(error) => {
                    tracing::warn!(listener = name, %error, "worker cannot take the connection");
                }
            }
        });
    }
}

/// Runs `task` tracked by `drain`, dropped (its guards still run) when the drain aborts.
pub fn spawn_until_aborted<F>(drain: &Drain, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let aborted = drain.aborted();
    // Boxed: by value it would be stored twice in the task (captured, and again in
    // `select!`'s state): kilobytes more per connection.
    let task = Box::pin(task);
    drain.spawn(async move {
        tokio::select! {
            () = task => {}
            () = aborted => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_limit_connections_are_handled_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let drain = Drain::new();
        let started = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let (s, a, m, r) = (
            started.clone(),
            active.clone(),
            most.clone(),
            release.clone(),
        );
        drain.spawn(serve(
            listener,
            "test",
            1,
            drain.clone(),
            move |_stream, _| {
                let (s, a, m, r) = (s.clone(), a.clone(), m.clone(), r.clone());
                async move {
                    let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    s.fetch_add(1, Ordering::SeqCst);
                    let _ = r.acquire().await.map(|p| p.forget());
                    a.fetch_sub(1, Ordering::SeqCst);
                }
            },
        ));
        let clients: Vec<TcpStream> =
            futures_util::future::join_all((0..3).map(|_| TcpStream::connect(addr)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        for n in 1..=3 {
            while started.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
            release.add_permits(1);
        }
        drain.shutdown(Duration::from_secs(5)).await;
        assert_eq!(started.load(Ordering::SeqCst), 3);
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "the limit of 1 was exceeded"
        );
        drop(clients);
    }
}
