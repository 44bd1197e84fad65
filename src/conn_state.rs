//! What a client connection's I/O and its request handler tell each other:
//! requests in flight (for the idle and header timeouts), upgrades (which end
//! those timeouts) and request heads whose framing was ambiguous.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use futures_util::task::AtomicWaker;

#[derive(Default)]
pub struct ConnState {
    in_flight: AtomicUsize,
    completed: AtomicU64,
    upgraded: AtomicBool,
    multiplexed: AtomicBool,
    ambiguous_framing: AtomicBool,
    /// The connection's reader, parked without a deadline while requests
    /// were in flight; woken when the last one finishes so it can start the
    /// idle clock.
    idle_waker: AtomicWaker,
}

impl ConnState {
    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub fn wake_when_idle(&self, waker: &Waker) {
        self.idle_waker.register(waker);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts finished exchanges; a change tells the I/O that idleness began.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    pub fn upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// HTTP/2: bytes between requests are frames, not a request head.
    pub fn set_multiplexed(&self) {
        self.multiplexed.store(true, Ordering::Release);
    }

    pub fn multiplexed(&self) -> bool {
        self.multiplexed.load(Ordering::Acquire)
    }

    pub fn flag_ambiguous_framing(&self) {
        self.ambiguous_framing.store(true, Ordering::Release);
    }

    /// Whether the request head just read had both Content-Length and
    /// Transfer-Encoding (a request-smuggling shape); clears the flag.
    pub fn take_ambiguous_framing(&self) -> bool {
        self.ambiguous_framing.swap(false, Ordering::AcqRel)
    }
}

pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.completed.fetch_add(1, Ordering::AcqRel);
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_waker.wake();
        }
    }
}
