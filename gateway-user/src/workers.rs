//! Thread-per-core serving: captured connections are served on one of N single-threaded
//! runtimes (one per core), and every task a connection spawns (its upstream connections'
//! drivers, its body pumps) stays on that thread.
//!
//! A work-stealing runtime moves tasks between threads and wakes idle threads to look for
//! work: futex calls and context switches per request, and a connection's tasks hopping
//! between cores. Measured on the bench's 2-core node (W1), one thread used about a fifth
//! less CPU per request than two stealing ones; one runtime per core keeps that while still
//! using every core. Each connection goes to the worker serving the fewest (ties taken in
//! turn); a tunnel that outlives its connection's task is counted with [`hold`]. Upstream
//! pools are per worker ([`current`] is part of their key), so a request never waits on a
//! connection driven by another thread.
//!
//! The price: no task moves to an idle core, so a connection's CPU-heavy step (minting a
//! leaf for a new name, compiling a session's policy) delays the other connections of its
//! worker for that long (tens of microseconds).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::drain::Drain;

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
    /// The connection count of the worker this thread is, if it is one.
    static ACTIVE: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
}

/// The worker whose thread this is (`None` off the workers: the daemon's main runtime,
/// tests).
pub fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// Counts one more connection on this thread's worker until the guard drops: for a tunnel
/// that outlives the task its connection was handed over in (an explicit proxy's `CONNECT`).
/// `None` off the workers.
pub fn hold() -> Option<Busy> {
    ACTIVE.with(|active| active.borrow().as_ref().map(Busy::on))
}

/// The running workers; they stop when this is dropped (after the drain has waited for
/// their connections).
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
    /// Where the search for the least busy worker starts next (ties are taken in turn).
    next: AtomicUsize,
    stop: CancellationToken,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Connections it is serving now.
    active: Arc<AtomicUsize>,
}

/// Counts a connection on its worker until dropped.
#[derive(Debug)]
pub struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn on(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(count))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` workers (at least one), each a thread named `sluice-wN` running its own
    /// single-threaded runtime.
    ///
    /// # Errors
    /// A runtime or thread that cannot be created (the ones already started stop).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut workers = Vec::with_capacity(n.max(1));
        for index in 0..n.max(1) {
            match Worker::start(index, &stop) {
                Ok(worker) => workers.push(worker),
                Err(error) => {
                    stop.cancel();
                    return Err(error);
                }
            }
        }
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// One worker per core the process may run on.
    ///
    /// # Errors
    /// See [`Workers::start`].
    pub fn per_core() -> std::io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Connections each worker is serving now.
    pub fn active(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.active.load(Ordering::Relaxed))
            .collect()
    }

    /// Runs `task` on the worker serving the fewest connections, tracked by `drain` and
    /// dropped (its guards still run) when the drain aborts. `task` is first polled on that
    /// worker, so what it registers (sockets, timers) belongs to that worker's runtime.
    pub fn spawn<F>(&self, drain: &Drain, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let n = self.workers.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(worker) = (0..n)
            .filter_map(|i| self.workers.get((first + i) % n))
            .min_by_key(|w| w.active.load(Ordering::Relaxed))
        else {
            return;
        };
        let active = Busy::on(&worker.active);
        let aborted = drain.aborted();
        // Boxed: by value it would be stored twice in the task (captured, and again in
        // `select!`'s state): kilobytes more per connection.
        let task = Box::pin(task);
        drain.spawn_on(&worker.handle, async move {
            let _active = active;
            tokio::select! {
                () = task => {}
                () = aborted => {}
            }
        });
    }
}

impl Worker {
    /// Starts worker `index`: its thread builds its runtime and runs it until `stop`. The
    /// runtime is made and dropped on that thread only (dropping one inside async code
    /// panics).
    fn start(index: usize, stop: &CancellationToken) -> std::io::Result<Worker> {
        let (ready, started) = mpsc::sync_channel(1);
        let stopped = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&active);
        std::thread::Builder::new()
            .name(format!("sluice-w{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                INDEX.with(|i| i.set(Some(index)));
                ACTIVE.with(|a| *a.borrow_mut() = Some(count));
                let _ = ready.send(Ok(runtime.handle().clone()));
                runtime.block_on(stopped.cancelled());
            })?;
        let handle = started.recv().map_err(|_| {
            std::io::Error::other(format!("worker {index} stopped before it started"))
        })??;
        Ok(Worker { handle, active })
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_least_busy_worker_and_the_drain_waits_for_them() {
        let workers = Workers::start(2).unwrap();
        let drain = Drain::new();
        let (release, held) = tokio::sync::watch::channel(false);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..4 {
            let (seen_tx, mut held) = (seen_tx.clone(), held.clone());
            workers.spawn(&drain, async move {
                let thread = std::thread::current().name().map(str::to_owned);
                let _ = seen_tx.send((current(), thread));
                let _ = held.wait_for(|go| *go).await;
            });
        }
        let mut on = Vec::new();
        for _ in 0..4 {
            on.push(seen.recv().await.unwrap());
        }
        on.sort();
        assert_eq!(
            on,
            [
                (Some(0), Some("sluice-w0".to_owned())),
                (Some(0), Some("sluice-w0".to_owned())),
                (Some(1), Some("sluice-w1".to_owned())),
                (Some(1), Some("sluice-w1".to_owned())),
            ]
        );
        assert_eq!(workers.active(), [2, 2]);
        assert_eq!(current(), None, "the test's own thread is no worker");
        release.send(true).unwrap();
        drain.shutdown(Duration::from_secs(10)).await;
        assert_eq!(workers.active(), [0, 0]);
    }

    #[tokio::test]
    async fn a_held_tunnel_counts_on_its_worker_until_dropped() {
        let workers = Workers::start(1).unwrap();
        let drain = Drain::new();
        assert!(hold().is_none(), "no worker here");
        let (tx, rx) = tokio::sync::oneshot::channel();
        workers.spawn(&drain, async move {
            let _ = tx.send(hold());
        });
        let busy = rx.await.unwrap();
        assert!(busy.is_some());
        drain.shutdown(Duration::from_secs(10)).await;
        assert_eq!(workers.active(), [1], "the task is over, its tunnel is not");
        drop(busy);
        assert_eq!(workers.active(), [0]);
    }

    #[tokio::test]
    async fn an_abort_drops_what_the_workers_still_run() {
        let workers = Workers::start(1).unwrap();
        let drain = Drain::new();
        let (dropped_tx, dropped) = tokio::sync::oneshot::channel::<()>();
        workers.spawn(&drain, async move {
            let _on_drop = dropped_tx;
            std::future::pending::<()>().await;
        });
        drain.shutdown(Duration::from_millis(50)).await;
        assert!(dropped.await.is_err(), "the task's state was dropped");
        assert_eq!(workers.active(), [0]);
    }
}
