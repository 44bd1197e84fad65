//! THRUST_MAX_APP_CONNECTIONS: how many connections to the app may be open
//! at once, so that a crowd costs the app at most that many. The cap is
//! split evenly over the worker threads, each with its pool (at least one
//! each): a pool never waits on another thread, and room never has to move
//! between pools by closing one's connections for another's.
//!
//! A request that finds no idle connection in its pool opens one if its
//! share allows; otherwise it waits in a queue (tokio's `Notify`, first come
//! first served) within THRUST_UPSTREAM_TIMEOUT until a connection of its
//! pool is handed back or closes.
//!
//! Long-lived exchanges leave the count so they cannot starve the queue: an
//! event stream (`text/event-stream`) or a WebSocket stops counting once
//! its response head arrives, and an upload (a request with a body) that
//! finds the share taken opens a connection outside it rather than wait,
//! bounded by the client connection limit and HTTP_READ_TIMEOUT. A
//! connection outside the count goes back to the pool only if there is
//! room in the count again, else it is closed. A large answer counts until
//! its last byte has come from the app: the app is still busy with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The default: a few times what an app server on this machine can work on
/// at once (Puma: a few threads per core), and never fewer than 16.
pub fn default_cap(cpus: usize) -> usize {
    (cpus * 8).max(16)
}

/// Each worker's share of `cap` (the remainder to the first ones; at
/// least one each).
pub fn shares(cap: usize, workers: usize) -> Vec<usize> {
    let workers = workers.max(1);
    (0..workers)
        .map(|i| (cap / workers + usize::from(i < cap % workers)).max(1))
        .collect()
}

pub struct AppConnections {
    cap: usize,
    /// Connections counted against the cap now.
    counted: AtomicUsize,
    /// Connections open now, counted or not.
    open: AtomicUsize,
    /// Requests waiting for room: hand-backs wake one only when some wait.
    waiting: AtomicUsize,
    /// Wakes a waiting request when a connection is handed back or closes.
    freed: Notify,
}

/// A connection's place in the count; given back (and a waiter woken)
/// when dropped.
pub struct Counted(Arc<AppConnections>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.counted.fetch_sub(1, Ordering::AcqRel);
        self.0.handed_back();
    }
}

/// One open connection, counted or not, for the gauge.
pub struct Open(Arc<AppConnections>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AppConnections {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(AppConnections {
            cap,
            counted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// A place in the count, if the cap allows one now.
    pub fn try_count(self: &Arc<Self>) -> Option<Counted> {
        self.counted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Counted(self.clone()))
    }

    /// Counts a connection being opened, for the gauge.
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }

    /// Waits until a connection may have been handed back or closed: to be
    /// called after `room` found none; `room` is tried again once waiting
    /// is registered, so no hand-back in between is missed.
    pub async fn wait_for_room(&self, room: impl Fn() -> bool) {
        let freed = self.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        self.waiting.fetch_add(1, Ordering::AcqRel);
        if !room() {
            freed.await;
        }
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    /// A connection was handed back or left the count: a waiting request
    /// may have room now.
    pub fn handed_back(&self) {
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_one();
        }
    }

    /// Whether the cap is reached (requests wait for room).
    pub fn full(&self) -> bool {
        self.counted.load(Ordering::Acquire) >= self.cap
    }

    /// Connections open now, and those counted against the cap.
    pub fn open_and_counted(&self) -> (usize, usize) {
        (
            self.open.load(Ordering::Relaxed),
            self.counted.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_a_request_waits_until_a_connection_closes() {
        let cap = AppConnections::new(1);
        let first = cap.try_count().unwrap();
        assert!(cap.try_count().is_none() && cap.full());
        let waiting = tokio::spawn({
            let cap = cap.clone();
            async move {
                cap.wait_for_room(|| false).await;
                cap.try_count().is_some()
            }
        });
        while cap.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        drop(first);
        assert!(waiting.await.unwrap());
    }

    #[test]
    fn the_cap_is_shared_out_over_the_workers() {
        assert_eq!(default_cap(1), 16);
        assert_eq!(default_cap(4), 32);
        assert_eq!(shares(8, 2), [4, 4]);
        assert_eq!(shares(8, 3), [3, 3, 2]);
        assert_eq!(shares(1, 2), [1, 1]);
    }
}
