//! Worker threads: one single-threaded tokio runtime per core, nginx's model.
//!
//! Each worker accepts on its own `SO_REUSEPORT` socket of every listener
//! (the kernel spreads new connections across them), does the handshake,
//! serves the requests and talks to the upstream on the same thread, through
//! its own upstream connection pool (`Upstream::client`). Nothing a request
//! does wakes another thread: tokio's work-stealing scheduler, by contrast,
//! moved the request task and the pooled upstream connection's task between
//! threads and paid for it in cross-CPU wakeups (BENCHMARKS.md).
//!
//! Shared state (the runtime snapshot, rate limits, metrics, the revocation
//! registry) is `Sync` and lives behind `Arc`s as before. Background work
//! (health checks, reloads, the admin API, the redirect and echo listeners)
//! runs on the control runtime the binary builds; `current()` is 0 there.
//! docs/request-path.md, "Threads".

use std::cell::Cell;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker this thread is (1-based), 0 on any other thread.
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// How many workers `worker_threads` asks for: the setting, or one per core.
pub fn count(worker_threads: Option<usize>) -> usize {
    worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Per-worker slots to build for `workers` workers: one each plus one for
/// the control runtime (indexed by [`current`]).
pub fn slots(workers: usize) -> usize {
    workers.max(1) + 1
}

/// Running worker threads.
pub struct Workers {
    handles: Vec<Handle>,
    exit: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` worker threads, each with its own current-thread runtime.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let (exit, exit_rx) = watch::channel(false);
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 1..=n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let mut exit_rx = exit_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("portcullis-worker-{i}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(i));
                    rt.block_on(async move {
                        let _ = exit_rx.wait_for(|e| *e).await;
                    });
                    // Connections still open after the shutdown deadline are dropped here.
                    rt.shutdown_timeout(Duration::from_millis(200));
                })?;
            threads.push(t);
        }
        Ok(Workers {
            handles,
            exit,
            threads,
        })
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops every worker (dropping what still runs on them) and waits for the threads.
    pub async fn stop(self) {
        let _ = self.exit.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_their_worker_and_stop_ends_the_threads() {
        let w = Workers::start(2).unwrap();
        let mut seen = Vec::new();
        for h in w.handles() {
            seen.push(h.spawn(async { current() }).await.unwrap());
        }
        assert_eq!(seen, vec![1, 2]);
        assert_eq!(current(), 0);
        // A task that never ends does not keep a worker alive past stop().
        w.handles()[0].spawn(std::future::pending::<()>());
        w.stop().await;
    }

    #[test]
    fn count_defaults_to_cores_and_is_at_least_one() {
        assert_eq!(count(Some(3)), 3);
        assert!(count(None) >= 1);
    }
}
