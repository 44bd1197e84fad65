//! Whether the app server can take requests: starting → ready → draining.
//! Shared by the health endpoint, the proxy's boot wait and the supervisor.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::config::Worker;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Starting,
    Ready,
    Draining,
    Stopped,
}

/// How often the worker's port is tried while nothing waits for it, and
/// while a request does: a held request should go through the moment the
/// app accepts, and a refused connect costs microseconds.
const PROBE_IDLE: Duration = Duration::from_millis(25);
const PROBE_WAITED_ON: Duration = Duration::from_millis(1);

pub struct Readiness {
    ready: watch::Sender<bool>,
    draining: AtomicBool,
    child_gone: AtomicBool,
    /// Requests held until the app is ready.
    waiting: AtomicUsize,
    /// Wakes the probe when a request starts waiting.
    someone_waits: Notify,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            ready: watch::Sender::new(false),
            draining: AtomicBool::new(false),
            child_gone: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            someone_waits: Notify::new(),
        }
    }
}

impl Readiness {
    pub fn health(&self) -> Health {
        if self.child_gone.load(Ordering::Acquire) {
            Health::Stopped
        } else if self.draining.load(Ordering::Acquire) {
            Health::Draining
        } else if *self.ready.borrow() {
            Health::Ready
        } else {
            Health::Starting
        }
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The app is down and being started again (THRUST_RESTART=on-failure):
    /// requests wait for it as during boot.
    pub fn set_starting(&self) {
        self.ready.send_replace(false);
    }

    pub fn set_child_gone(&self) {
        self.child_gone.store(true, Ordering::Release);
    }

    /// Waits up to `limit` for the worker to accept connections; meanwhile
    /// the probe tries every millisecond.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        let _waiting = Waiting::count(&self.waiting);
        self.someone_waits.notify_one();
        tokio::time::timeout(limit, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Connects to the worker until it accepts, then marks it ready and logs
    /// after how long. While it does not, warns every 10 s with the ports the
    /// child does listen on.
    pub async fn watch_worker(&self, worker: Worker, child_pid: u32) {
        let started = Instant::now();
        let mut next_warning = started + Duration::from_secs(10);
        loop {
            if self.child_gone.load(Ordering::Acquire) {
                return;
            }
            if worker_accepts(&worker).await {
                self.ready.send_replace(true);
                tracing::info!(
                    pid = child_pid,
                    after_ms = started.elapsed().as_millis() as u64,
                    "Child ready"
                );
                return;
            }
            if Instant::now() >= next_warning {
                next_warning += Duration::from_secs(10);
                warn_not_listening(&worker, child_pid, started.elapsed());
            }
            let pause = if self.waiting.load(Ordering::Acquire) > 0 {
                PROBE_WAITED_ON
            } else {
                PROBE_IDLE
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.someone_waits.notified() => {}
            }
        }
    }
}

/// One request held for the app, counted until it stops waiting (also when
/// its client goes away).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn worker_accepts(worker: &Worker) -> bool {
    match worker {
        Worker::Port(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .is_ok(),
        Worker::Socket(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
    }
}

fn warn_not_listening(worker: &Worker, child_pid: u32, waited: Duration) {
    let expected = match worker {
        Worker::Port(port) => format!("127.0.0.1:{port}"),
        Worker::Socket(path) => format!("unix:{}", path.display()),
    };
    let found = crate::app::ports::listening_addresses(child_pid);
    let seconds = waited.as_secs();
    if found.is_empty() {
        tracing::warn!(
            expected = %expected,
            waited_s = seconds,
            "Child is not listening yet: thrust expects {expected}; the child listens on no TCP port"
        );
    } else {
        let list = found
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        tracing::warn!(
            expected = %expected,
            child_listens_on = %list,
            waited_s = seconds,
            "Child listens on {list}, thrust expects {expected}: bind to $PORT on 0.0.0.0 or 127.0.0.1"
        );
    }
}
