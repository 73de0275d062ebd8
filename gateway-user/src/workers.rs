//! Thread-per-core serving: captured connections are served on one of N single-threaded
//! runtimes (one per core), and every task a connection spawns (its upstream connections'
//! drivers, its body pumps) stays on that thread.
//!
//! A work-stealing runtime moves tasks between threads and wakes idle threads to look for
//! work: futex calls and context switches per request, and a connection's tasks hopping
//! between cores. Measured on the bench's 2-core node (W1), one thread used about a fifth
//! less CPU per request than two stealing ones; one runtime per core keeps that while still
//! using every core. Each connection goes to the worker serving the fewest; upstream pools
//! are per worker ([`current`] is part of their key), so a request never waits on a
//! connection driven by another thread.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::drain::Drain;

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker whose thread this is (`None` off the workers: the daemon's main runtime,
/// tests).
pub fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// The running workers; they stop when this is dropped (after the drain has waited for
/// their connections).
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Connections it is serving now.
    active: Arc<AtomicUsize>,
}

/// Counts a connection on its worker until dropped.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
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
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let stopped = stop.clone();
            let started = std::thread::Builder::new()
                .name(format!("sluice-w{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(Some(index)));
                    runtime.block_on(stopped.cancelled());
                });
            if let Err(error) = started {
                stop.cancel();
                return Err(error);
            }
            workers.push(Worker {
                handle,
                active: Arc::default(),
            });
        }
        Ok(Workers { workers, stop })
    }

    /// One worker per core the process may run on.
    ///
    /// # Errors
    /// See [`Workers::start`].
    pub fn per_core() -> std::io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there are none (never: at least one is started).
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
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
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.active.load(Ordering::Relaxed))
        else {
            return;
        };
        worker.active.fetch_add(1, Ordering::Relaxed);
        let active = Active(Arc::clone(&worker.active));
        let aborted = drain.aborted();
        drain.spawn_on(&worker.handle, async move {
            let _active = active;
            tokio::select! {
                () = task => {}
                () = aborted => {}
            }
        });
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
