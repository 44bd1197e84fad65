//! What a client connection's I/O and its request handler tell each other:
//! requests in flight (for the idle and header timeouts), upgrades (which end
//! those timeouts), request heads thrust refuses, and when an idle
//! connection should be parked (see `parking`), and the app's 103 Early
//! Hints waiting to be written (`interim`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;

use futures_util::task::AtomicWaker;

use crate::conn::crowd::Seat;
use crate::conn::interim::Interim;
use crate::conn::zero_copy::Slots;
use crate::http::head_scan::Head;

pub struct ConnState {
    in_flight: AtomicUsize,
    completed: AtomicU64,
    upgraded: AtomicBool,
    multiplexed: AtomicBool,
    /// Heads the request handlers have taken: the next handler's number.
    heads_taken: AtomicU64,
    /// Refused heads by number, oldest first; `any_refused` spares the lock
    /// on every request.
    refused: Mutex<VecDeque<(u64, Head)>>,
    any_refused: AtomicBool,
    /// The connection's reader, parked without a deadline while requests
    /// were in flight; woken when the last one finishes so it can start the
    /// idle clock.
    idle_waker: AtomicWaker,
    /// Set by the I/O once the connection has idled long enough to park.
    park: AtomicBool,
    park_waker: AtomicWaker,
    /// Whether file bodies may be sent as stand-ins (see `zero_copy`), and
    /// where: made when the first file is sent, as most connections never
    /// send one.
    sends_files: bool,
    file_slots: OnceLock<Arc<Slots>>,
    /// 103 Early Hints waiting for the socket (HTTP/1.1).
    interim: Interim,
    /// The connection's place in the crowd (see `crowd`).
    seat: Arc<Seat>,
}

impl ConnState {
    /// A connection holding `seat` in the crowd.
    pub fn seated(seat: Arc<Seat>) -> Self {
        Self::new(seat, false)
    }

    /// A connection whose socket sends file parts for stand-ins.
    pub fn sending_files(seat: Arc<Seat>) -> Self {
        Self::new(seat, true)
    }

    fn new(seat: Arc<Seat>, sends_files: bool) -> Self {
        ConnState {
            in_flight: AtomicUsize::default(),
            completed: AtomicU64::default(),
            upgraded: AtomicBool::default(),
            multiplexed: AtomicBool::default(),
            heads_taken: AtomicU64::default(),
            refused: Mutex::default(),
            any_refused: AtomicBool::default(),
            idle_waker: AtomicWaker::default(),
            park: AtomicBool::default(),
            park_waker: AtomicWaker::default(),
            sends_files,
            file_slots: OnceLock::new(),
            interim: Interim::default(),
            seat,
        }
    }

    pub fn seat(&self) -> &Arc<Seat> {
        &self.seat
    }

    pub fn file_slots(&self) -> Option<&Arc<Slots>> {
        self.sends_files
            .then(|| self.file_slots.get_or_init(Arc::default))
    }

    pub fn interim(&self) -> &Interim {
        &self.interim
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.seat.busy();
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

    /// HTTP/2 or HTTP/3: the connection carries streams of frames, never an
    /// HTTP/1 request head to scan.
    pub fn set_multiplexed(&self) {
        self.multiplexed.store(true, Ordering::Release);
    }

    pub fn multiplexed(&self) -> bool {
        self.multiplexed.load(Ordering::Acquire)
    }

    /// Asks the connection's driver to park it.
    pub fn request_park(&self) {
        if !self.park.swap(true, Ordering::AcqRel) {
            self.park_waker.wake();
        }
    }

    pub fn park_requested(&self) -> bool {
        self.park.load(Ordering::Acquire)
    }

    pub fn clear_park(&self) {
        self.park.store(false, Ordering::Release);
    }

    /// Completes once parking is requested.
    pub async fn parking(&self) {
        std::future::poll_fn(|cx| {
            self.park_waker.register(cx.waker());
            if self.park_requested() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Records what the scanner found in request head number `number`.
    pub fn head_read(&self, number: u64, head: Head) {
        if head == Head::Fine {
            return;
        }
        self.lock_refused().push_back((number, head));
        self.any_refused.store(true, Ordering::Release);
    }

    /// What the next request's head was. HTTP/1 requests are handled in the
    /// order their heads arrived, so the n-th handler takes the n-th head's
    /// verdict: a refusal meant for a pipelined request is never answered
    /// on the one before it.
    pub fn take_head(&self) -> Head {
        let number = self.heads_taken.fetch_add(1, Ordering::AcqRel);
        if !self.any_refused.load(Ordering::Acquire) {
            return Head::Fine;
        }
        let mut refused = self.lock_refused();
        while refused.front().is_some_and(|(n, _)| *n < number) {
            refused.pop_front();
        }
        let head = match refused.front() {
            Some((n, head)) if *n == number => *head,
            _ => Head::Fine,
        };
        if head != Head::Fine {
            refused.pop_front();
        }
        self.any_refused
            .store(!refused.is_empty(), Ordering::Release);
        head
    }

    fn lock_refused(&self) -> MutexGuard<'_, VecDeque<(u64, Head)>> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
