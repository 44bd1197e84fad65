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

use crate::app::app_connections::{self, AppConnections};
use crate::app::target::AppTarget;
use crate::app::upstream::{self, UpstreamClient};

/// Threads a worker keeps for its blocking work (storing compressed
/// variants, making dictionary deltas): each of those is
/// already bounded by a semaphore or runs alone, and every thread that has
/// compressed keeps its compressor state and may hold heap pages.
const BLOCKING_THREADS: usize = 2;

/// One worker thread: where to spawn its tasks and its app connection pool.
pub struct ConnWorker {
    pub handle: Handle,
    pub upstream: UpstreamClient,
}

/// One worker per CPU thrust may use (cgroup quotas included).
pub fn count() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

pub struct Workers {
    workers: Vec<ConnWorker>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count()` workers, each with a pool to `target` holding its
    /// share of `max_app_connections`.
    pub fn start(target: &Arc<AppTarget>, max_app_connections: usize) -> io::Result<Self> {
        let shares = app_connections::shares(max_app_connections, count());
        let workers = shares
            .into_iter()
            .enumerate()
            .map(|(index, share)| {
                let runtime = Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads(BLOCKING_THREADS)
                    .build()?;
                let handle = runtime.handle().clone();
                thread::Builder::new()
                    .name(format!("thrust-worker-{index}"))
                    // Runs the spawned connections for as long as thrust lives.
                    .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
                let upstream = upstream::client(target.clone(), AppConnections::new(share));
                handle.spawn(trim_every_second(upstream.clone()));
                Ok(ConnWorker { handle, upstream })
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

    /// The worker that serves HTTP/3: all QUIC connections share one UDP
    /// endpoint, whose drivers run on one thread (`http3::Pending::open`).
    pub fn quic_home(&self) -> &ConnWorker {
        &self.workers[0]
    }

    /// The worker for the next connection, in turn.
    pub fn next(&self) -> &ConnWorker {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        &self.workers[index]
    }
}

/// Closes what a worker's quiet pool no longer needs, once a second.
async fn trim_every_second(upstream: UpstreamClient) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        upstream.trim();
    }
}
