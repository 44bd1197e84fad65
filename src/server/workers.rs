//! Connection workers: one single-threaded runtime per CPU, each with its own
//! pool of app connections. A client connection and the app connections that
//! serve it live on one thread, so a proxied request never hops between
//! threads (no cross-thread wake-ups, no work stealing): the nginx
//! worker-process shape, inside one process.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use tokio::runtime::{Builder, Handle};

use crate::app::target::AppTarget;
use crate::app::upstream::{self, UpstreamClient};

/// One worker thread: where to spawn its tasks and its app connection pool.
pub struct ConnWorker {
    pub handle: Handle,
    pub upstream: UpstreamClient,
}

pub struct Workers {
    workers: Vec<ConnWorker>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts one worker per CPU thrust may use (cgroup quotas included).
    pub fn start(target: &Arc<AppTarget>) -> io::Result<Self> {
        let count = thread::available_parallelism().map_or(1, |n| n.get());
        let workers = (0..count)
            .map(|index| {
                let runtime = Builder::new_current_thread().enable_all().build()?;
                let handle = runtime.handle().clone();
                thread::Builder::new()
                    .name(format!("thrust-worker-{index}"))
                    // Runs the spawned connections for as long as thrust lives.
                    .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
                Ok(ConnWorker {
                    handle,
                    upstream: upstream::client(target.clone()),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// Every worker's app connection pool, with the runtime it belongs to.
    pub fn pools(&self) -> Vec<(Handle, UpstreamClient)> {
        self.workers
            .iter()
            .map(|w| (w.handle.clone(), w.upstream.clone()))
            .collect()
    }

    /// The worker for the next connection, in turn.
    pub fn next(&self) -> &ConnWorker {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        &self.workers[index]
    }
}
