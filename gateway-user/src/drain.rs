//! Drain-aware shutdown shared by every listener and connection task.
//!
//! Stopping happens in two steps: listeners stop accepting, in-flight connections get a grace
//! period to finish, and only then are the rest aborted (their audit guards still write).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A handle to the daemon's (or one sandbox's) shutdown state. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    stop_accepting: CancellationToken,
    abort: CancellationToken,
    tasks: TaskTracker,
}

impl Drain {
    /// A fresh drain with nothing stopped.
    pub fn new() -> Drain {
        Drain::default()
    }

    /// A drain whose listeners also stop when this one stops, but can be stopped on its own
    /// (a sandbox's in-namespace listeners). Its tasks are tracked by the parent.
    pub fn child(&self) -> Drain {
        Drain {
            stop_accepting: self.stop_accepting.child_token(),
            abort: self.abort.child_token(),
            tasks: self.tasks.clone(),
        }
    }

    /// Resolves when listeners must stop accepting.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop_accepting.clone().cancelled_owned()
    }

    /// A token cancelled when listeners must stop (for servers that take a token).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop_accepting.clone()
    }

    /// Resolves when in-flight work must be abandoned.
    pub fn aborted(&self) -> impl Future<Output = ()> + Send + 'static {
        self.abort.clone().cancelled_owned()
    }

    /// Runs `task` tracked, so [`Drain::shutdown`] waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// [`Drain::spawn`] on the runtime of `handle` (a worker's, see [`crate::workers`]).
    pub fn spawn_on<F>(&self, handle: &tokio::runtime::Handle, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn_on(task, handle);
    }

    /// Stops only this drain's listeners (and aborts its connections): used when one sandbox
    /// is removed.
    pub fn stop_now(&self) {
        self.stop_accepting.cancel();
        self.abort.cancel();
    }

    /// Stops accepting, waits up to `grace` for tracked tasks, then aborts the rest and waits.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_accepting.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.tasks.len(),
                "drain: grace period over, aborting"
            );
            self.abort.cancel();
            self.tasks.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slow_task_is_aborted_after_grace() {
        let drain = Drain::new();
        let aborted = drain.aborted();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        drain.spawn(async move {
            tokio::select! {
                () = aborted => {}
                () = tokio::time::sleep(Duration::from_secs(3600)) => flag.store(true, std::sync::atomic::Ordering::SeqCst),
            }
        });
        drain.shutdown(Duration::from_secs(5)).await;
        assert!(
            !done.load(std::sync::atomic::Ordering::SeqCst),
            "task was aborted, not completed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn child_stops_alone() {
        let parent = Drain::new();
        let child = parent.child();
        child.stop_now();
        tokio::time::timeout(Duration::from_millis(1), child.stopping())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(1), parent.stopping())
                .await
                .is_err()
        );
    }
}
