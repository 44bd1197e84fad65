//! Who gives way when the house is full (SPEC.md §11a). Every admitted
//! client connection holds a `Seat` in the `Crowd`, marked:
//! - idle: a parked HTTP/1 keep-alive connection, or an HTTP/2 or HTTP/3
//!   one with no stream open;
//! - waiting for a head: from its accept (through the TLS handshake) until
//!   its first request head is read whole, and again whenever a later
//!   head starts on a connection with nothing in flight;
//! - busy: a request in flight or a stream open.
//!
//! At the connection limit admission asks the crowd for room
//! (`Crowd::make_room`): the connection that has idled longest is closed,
//! or else the one whose head has been coming longest, if for at least
//! `HEAD_GRACE`. A busy connection is never closed for room, and a seat is
//! shed only from the phase it was found in (compare-and-swap), so one that
//! turns busy meanwhile keeps its request.
//!
//! Request heads being read share a budget of bytes (`Seat::hold_head_bytes`),
//! with what the cache leaves unused of its share (`CacheShare`): a head
//! that needs more buffer than is left closes the oldest head for room,
//! whatever its age, and so does the cache taking its share back, so large
//! unfinished heads cannot take thrust past its memory whatever the
//! connection limit. Heads closed for memory are reported (`HeadsClosed`).
//!
//! The two queues hold each seat at most once and are checked lazily: a
//! seat that changed since it was queued is queued again or dropped when it
//! reaches the front. Marking a seat is an atomic update on the
//! connection's own seat; the crowd's lock is taken only when a seat is
//! first queued and when room is asked for.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use super::cache_share::{Borrower, CacheShare};

/// How long a request head may have been coming before it can be closed to
/// make room. A browser's head arrives in one packet; at a full house a
/// head still unfinished after a tenth of a second is most likely a slow
/// or hostile client's. Short, because a client that reconnects as soon as
/// it is cut keeps its heads young: after each visitor that gets in, new
/// ones find room again once this has passed.
pub const HEAD_GRACE: Duration = Duration::from_millis(100);

/// Open connections from which the crowd counts as large: connections then
/// park sooner (`Seat::in_a_crowd`), as what each holds for a while after
/// its request adds up (hyper's 16 KiB of buffers: 16 MiB for the tenth of
/// a second after ten thousand clients' requests each second).
pub const LARGE_CROWD: usize = 1024;

/// A seat's state: its phase in the low bits, how many times it changed
/// phase above them (so a queue entry can tell it is out of date).
const PHASE_BITS: u32 = 2;
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;
const BUSY: u64 = 0;
const IDLE: u64 = 1;
const HEAD: u64 = 2;
const SHED: u64 = 3;

/// Which queue: index into `Seat::queued`.
const IDLE_QUEUE: usize = 0;
const HEAD_QUEUE: usize = 1;

/// Why a connection was closed to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// It was idle (the longest idle of all).
    Idle,
    /// Its request head had been coming for `HEAD_GRACE` or longer.
    SlowHead,
}

/// Told how many heads were just closed for memory.
pub type HeadsClosed = Box<dyn Fn(usize) + Send + Sync>;

pub struct Crowd {
    queues: Mutex<[VecDeque<Entry>; 2]>,
    /// Bytes of buffer the heads being read hold, and how many they may,
    /// besides what they borrow of the cache's share.
    head_bytes: AtomicUsize,
    head_budget: usize,
    cache: Arc<CacheShare>,
    heads_closed: HeadsClosed,
    /// What the open connections weigh (`Crowd::seat`, `Seat::weigh_more`),
    /// and how much they may.
    weight: AtomicUsize,
    weight_budget: usize,
    /// Connections seated and not yet gone.
    open: AtomicUsize,
    /// thrust is stopping: connections waiting for bytes close
    /// (`Seat::poll_closing`).
    stopping: AtomicBool,
}

/// What the memory a crowd's connections may hold is split into.
#[derive(Clone, Copy, Debug)]
pub struct Budgets {
    /// Bytes all request heads being read may hold at once.
    pub heads: usize,
    /// Bytes the connections themselves may weigh, each by its kind
    /// (plain, TLS, HTTP/2, HTTP/3).
    pub connections: usize,
}

/// What holding more of a head's bytes came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadRoom {
    Held,
    /// Held past the budget: this many of the oldest heads were closed to
    /// free their bytes (and reported).
    HeldForOldest(usize),
    /// Over the budget with no head to close: this one cannot grow.
    Full,
}

struct Entry {
    seat: Weak<Seat>,
    state: u64,
    since: Instant,
}

/// One connection's place in the crowd.
pub struct Seat {
    crowd: Arc<Crowd>,
    state: AtomicU64,
    queued: [AtomicBool; 2],
    /// HTTP/2 and HTTP/3 streams open (`Seat::stream_opened`).
    streams: AtomicUsize,
    /// Bytes of buffer its head being read holds (`hold_head_bytes`).
    head_bytes: AtomicUsize,
    /// What the connection weighs in the crowd's budget, until it closes.
    weight: AtomicUsize,
    shed: AtomicWaker,
}

impl Crowd {
    /// A crowd within `budgets`, its heads borrowing of `cache`.
    pub fn new(budgets: Budgets, cache: Arc<CacheShare>, heads_closed: HeadsClosed) -> Arc<Self> {
        let crowd = Arc::new(Crowd {
            queues: Mutex::default(),
            head_bytes: AtomicUsize::new(0),
            head_budget: budgets.heads,
            cache,
            heads_closed,
            weight: AtomicUsize::new(0),
            weight_budget: budgets.connections,
            open: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let borrower: Weak<dyn Borrower> = Arc::downgrade(&crowd) as Weak<Crowd>;
        crowd.cache.lend_to(borrower);
        crowd
    }

    /// Bytes the heads may hold now: their own and what the cache leaves.
    fn head_allowance(&self) -> usize {
        self.head_budget.saturating_add(self.cache.unused())
    }

    /// Closes the oldest heads holding bytes until the heads are within
    /// what they may hold, or none holds any; how many were closed.
    fn close_heads_for_memory(&self, queues: &mut [VecDeque<Entry>; 2]) -> usize {
        let mut closed = 0;
        while self.head_bytes.load(Ordering::Acquire) > self.head_allowance() {
            if !self.shed_oldest_head(&mut queues[HEAD_QUEUE]) {
                break;
            }
            closed += 1;
        }
        closed
    }

    /// thrust is stopping: every connection waiting for bytes, parked or
    /// new, is woken to close. Each of them is in a queue (idle, or waiting
    /// for a head); one that starts waiting after this finds `stopping`
    /// set. Connections serving requests hear of it from their own shutdown
    /// signal and finish what they serve.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let queues = self.lock();
        for entry in queues.iter().flatten() {
            if let Some(seat) = entry.seat.upgrade() {
                seat.shed.wake();
            }
        }
    }

    /// A seat for a connection just accepted, weighing `weight` bytes:
    /// waiting for its first head.
    pub fn seat(self: &Arc<Self>, weight: usize) -> Arc<Seat> {
        self.weight.fetch_add(weight, Ordering::AcqRel);
        self.open.fetch_add(1, Ordering::Relaxed);
        let seat = Arc::new(Seat {
            crowd: self.clone(),
            state: AtomicU64::new(BUSY),
            queued: Default::default(),
            streams: AtomicUsize::new(0),
            head_bytes: AtomicUsize::new(0),
            weight: AtomicUsize::new(weight),
            shed: AtomicWaker::new(),
        });
        seat.mark(HEAD, HEAD_QUEUE);
        seat
    }

    /// The open connections weigh more than their budget.
    pub fn overweight(&self) -> bool {
        self.weight.load(Ordering::Acquire) > self.weight_budget
    }

    /// Closes one connection to make room for a new one: the longest idle,
    /// or else the slowest head past `HEAD_GRACE`; `None` when every
    /// connection is busy or its head still young.
    pub fn make_room(&self) -> Option<Shed> {
        let now = Instant::now();
        let mut queues = self.lock();
        if shed_first(&mut queues[IDLE_QUEUE], IDLE_QUEUE, now, Duration::ZERO) {
            return Some(Shed::Idle);
        }
        shed_first(&mut queues[HEAD_QUEUE], HEAD_QUEUE, now, HEAD_GRACE).then_some(Shed::SlowHead)
    }

    /// Closes the oldest head that holds bytes; its bytes count as free
    /// from now. False when no head holds any.
    fn shed_oldest_head(&self, queue: &mut VecDeque<Entry>) -> bool {
        for at in 0..queue.len() {
            let Some(seat) = queue[at].seat.upgrade() else {
                continue;
            };
            // Its current state: an entry that is out of date still holds
            // the seat's place (it is not queued twice).
            let state = seat.state.load(Ordering::Acquire);
            if state & PHASE_MASK != HEAD || seat.head_bytes.load(Ordering::Acquire) == 0 {
                continue;
            }
            if seat.try_shed(state) {
                queue.remove(at);
                return true;
            }
        }
        false
    }

    fn lock(&self) -> MutexGuard<'_, [VecDeque<Entry>; 2]> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Borrower for Crowd {
    /// Closes the oldest heads holding bytes while the heads hold more
    /// than they may (the cache took some of its share back); reported.
    fn fit_heads(&self) {
        if self.head_bytes.load(Ordering::Acquire) > self.head_allowance() {
            let closed = self.close_heads_for_memory(&mut self.lock());
            if closed > 0 {
                (self.heads_closed)(closed);
            }
        }
    }
}

/// Sheds the first seat in `queue` still in that queue's phase and in it
/// for at least `min_age`; seats found changed are queued again (from now)
/// or let go. Each entry is looked at twice at most: once as queued, once
/// queued again.
fn shed_first(queue: &mut VecDeque<Entry>, which: usize, now: Instant, min_age: Duration) -> bool {
    for _ in 0..queue.len() * 2 {
        let Some(entry) = queue.pop_front() else {
            break;
        };
        let Some(seat) = entry.seat.upgrade() else {
            continue;
        };
        if entry.state != seat.state.load(Ordering::Acquire) {
            seat.requeue(queue, which, now);
            continue;
        }
        if now.saturating_duration_since(entry.since) < min_age {
            // The queue is in order of `since`: all behind are younger.
            queue.push_front(entry);
            return false;
        }
        if seat.try_shed(entry.state) {
            return true;
        }
        seat.requeue(queue, which, now);
    }
    false
}

/// `state` moved to `phase`, one change later.
fn advanced(state: u64, phase: u64) -> u64 {
    ((state >> PHASE_BITS).wrapping_add(1) << PHASE_BITS) | phase
}

fn phase_of(queue: usize) -> u64 {
    if queue == IDLE_QUEUE {
        IDLE
    } else {
        HEAD
    }
}

impl Seat {
    /// A request is in flight.
    pub fn busy(&self) {
        self.set_phase(BUSY);
    }

    /// Nothing in flight and no head coming: may be closed for room.
    pub fn idle(self: &Arc<Self>) {
        self.mark(IDLE, IDLE_QUEUE);
    }

    /// A request head has started with nothing in flight.
    pub fn waiting_for_head(self: &Arc<Self>) {
        self.mark(HEAD, HEAD_QUEUE);
    }

    /// Counts an HTTP/2 or HTTP/3 stream open, busy until the returned
    /// guard is dropped; the connection is idle once its last stream ends.
    pub fn stream_opened(self: &Arc<Self>) -> OpenStream {
        self.streams.fetch_add(1, Ordering::AcqRel);
        self.busy();
        OpenStream(self.clone())
    }

    /// Completes once the seat has been shed: the connection should close
    /// (an HTTP/2 or HTTP/3 one with GOAWAY).
    pub fn shed(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_shed(cx))
    }

    fn poll_shed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.shed.register(cx.waker());
        if self.is_shed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// For a connection waiting for bytes (parked, or new): ready once it
    /// is shed or thrust is stopping (`Crowd::stop`), else wakes `cx` when
    /// it is. One check in the waiter's own future, where a shutdown
    /// signal of its own would add to what each waiting connection holds.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.poll_shed(cx).is_ready() || self.crowd.stopping.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Counts `more` bytes of buffer for this connection's head against the
    /// budget all heads share (with what they borrow of the cache's share);
    /// past it, the oldest heads holding bytes are closed until it is kept
    /// (their bytes counted free at once, so a flood does not close more
    /// than it must). `release_head_bytes` gives them back.
    pub fn hold_head_bytes(&self, more: usize) -> HeadRoom {
        let crowd = &self.crowd;
        self.head_bytes.fetch_add(more, Ordering::AcqRel);
        let held = crowd.head_bytes.fetch_add(more, Ordering::AcqRel) + more;
        if held <= crowd.head_budget || held <= crowd.head_allowance() {
            return HeadRoom::Held;
        }
        let closed = crowd.close_heads_for_memory(&mut crowd.lock());
        if closed > 0 {
            (crowd.heads_closed)(closed);
            return HeadRoom::HeldForOldest(closed);
        }
        // Its own bytes back, unless it was closed itself meanwhile.
        let taken = self
            .head_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(more));
        if taken.is_ok() {
            crowd.head_bytes.fetch_sub(more, Ordering::AcqRel);
        }
        HeadRoom::Full
    }

    /// Gives back the bytes this connection's head held.
    pub fn release_head_bytes(&self) {
        let bytes = self.head_bytes.swap(0, Ordering::AcqRel);
        self.crowd.head_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Gives back what the connection weighs (once: shed, then dropped).
    fn release_weight(&self) {
        let weight = self.weight.swap(0, Ordering::AcqRel);
        self.crowd.weight.fetch_sub(weight, Ordering::AcqRel);
    }

    /// Whether `LARGE_CROWD` connections or more are open.
    pub fn in_a_crowd(&self) -> bool {
        self.crowd.open.load(Ordering::Relaxed) >= LARGE_CROWD
    }

    pub fn is_shed(&self) -> bool {
        self.state.load(Ordering::Acquire) & PHASE_MASK == SHED
    }

    /// Moves to `phase` (a shed seat stays shed); the new state if it changed.
    fn set_phase(&self, phase: u64) -> Option<u64> {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                let now = state & PHASE_MASK;
                (now != phase && now != SHED).then(|| advanced(state, phase))
            })
            .ok()
            .map(|old| advanced(old, phase))
    }

    /// Moves to `phase` and makes sure the seat is in that phase's queue.
    fn mark(self: &Arc<Self>, phase: u64, which: usize) {
        let Some(state) = self.set_phase(phase) else {
            return;
        };
        if self.queued[which].swap(true, Ordering::AcqRel) {
            return;
        }
        let mut queues = self.crowd.lock();
        let queue = &mut queues[which];
        // Seats of closed connections leave only when they reach the front:
        // sweep them out whenever the queue doubles.
        if queue.len() >= 1024 && queue.len().is_power_of_two() {
            queue.retain(|entry| entry.seat.strong_count() > 0);
        }
        queue.push_back(Entry {
            seat: Arc::downgrade(self),
            state,
            since: Instant::now(),
        });
    }

    /// Puts a seat found changed at the back of `queue`, from `now`, if it
    /// is in that queue's phase; otherwise lets it go from the queue (it
    /// comes back when it enters the phase again).
    fn requeue(self: &Arc<Self>, queue: &mut VecDeque<Entry>, which: usize, now: Instant) {
        let phase = phase_of(which);
        let mut state = self.state.load(Ordering::Acquire);
        if state & PHASE_MASK != phase {
            self.queued[which].store(false, Ordering::Release);
            // It may have entered the phase again before the flag went.
            state = self.state.load(Ordering::Acquire);
            if state & PHASE_MASK != phase || self.queued[which].swap(true, Ordering::AcqRel) {
                return;
            }
        }
        queue.push_back(Entry {
            seat: Arc::downgrade(self),
            state,
            since: now,
        });
    }

    /// Sheds the seat if it is still in `state`.
    fn try_shed(&self, state: u64) -> bool {
        let shed = advanced(state, SHED);
        let done = self
            .state
            .compare_exchange(state, shed, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if done {
            // What it holds is as good as free: it closes now, and room
            // made for one newcomer is not made again for the next.
            self.release_head_bytes();
            self.release_weight();
            self.shed.wake();
        }
        done
    }

    /// The connection turned out to weigh `more` bytes more (an HTTP/2
    /// connection's state), unless it is closing for room already; the
    /// admission makes room if that takes the crowd past its budget.
    pub fn weigh_more(&self, more: usize) {
        if self.is_shed() {
            return;
        }
        self.weight.fetch_add(more, Ordering::AcqRel);
        self.crowd.weight.fetch_add(more, Ordering::AcqRel);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.release_weight();
        self.crowd.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP/2 or HTTP/3 stream counted open on its connection's seat.
pub struct OpenStream(Arc<Seat>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle();
            // A stream opened in between keeps the connection busy.
            if self.0.streams.load(Ordering::Acquire) > 0 {
                self.0.busy();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNBOUNDED: Budgets = Budgets {
        heads: usize::MAX,
        connections: usize::MAX,
    };

    /// A crowd whose heads borrow nothing of the cache's share.
    fn crowd(budgets: Budgets) -> Arc<Crowd> {
        Crowd::new(budgets, CacheShare::new(0), Box::new(|_| {}))
    }

    #[test]
    fn the_longest_idle_goes_first_and_busy_ones_never() {
        let crowd = crowd(UNBOUNDED);
        let (first, second, busy) = (crowd.seat(0), crowd.seat(0), crowd.seat(0));
        busy.busy();
        first.busy();
        second.busy();
        first.idle();
        second.idle();
        assert_eq!(crowd.make_room(), Some(Shed::Idle));
        assert!(first.is_shed() && !second.is_shed());
        assert_eq!(crowd.make_room(), Some(Shed::Idle));
        assert!(second.is_shed());
        // Heads are young, the last one busy: no room.
        assert_eq!(crowd.make_room(), None);
        assert!(!busy.is_shed());
    }

    #[test]
    fn a_crowd_is_large_from_large_crowd_connections_until_they_are_gone() {
        let crowd = crowd(UNBOUNDED);
        let mut seats: Vec<_> = (1..LARGE_CROWD).map(|_| crowd.seat(0)).collect();
        assert!(!seats[0].in_a_crowd());
        seats.push(crowd.seat(0));
        assert!(seats[0].in_a_crowd());
        // Shed ones count until their connection is gone.
        seats[1].idle();
        assert_eq!(crowd.make_room(), Some(Shed::Idle));
        assert!(seats[0].in_a_crowd());
        seats.truncate(LARGE_CROWD - 1);
        assert!(!seats[0].in_a_crowd());
    }

    #[test]
    fn a_seat_that_turned_busy_is_not_shed() {
        let crowd = crowd(UNBOUNDED);
        let seat = crowd.seat(0);
        seat.busy();
        seat.idle();
        seat.busy();
        assert_eq!(crowd.make_room(), None);
        assert!(!seat.is_shed());
        // Idle again after the queue let it go: queued again.
        seat.idle();
        assert_eq!(crowd.make_room(), Some(Shed::Idle));
        // A shed seat stays shed.
        seat.busy();
        assert!(seat.is_shed());
    }

    #[test]
    fn heads_go_only_once_past_the_grace() {
        let crowd = crowd(UNBOUNDED);
        let seat = crowd.seat(0);
        assert_eq!(crowd.make_room(), None);
        let mut queues = crowd.lock();
        queues[HEAD_QUEUE][0].since -= HEAD_GRACE;
        drop(queues);
        assert_eq!(crowd.make_room(), Some(Shed::SlowHead));
        assert!(seat.is_shed());
    }

    #[test]
    fn heads_over_their_budget_close_the_oldest_heads_holding_bytes() {
        let crowd = crowd(Budgets {
            heads: 1000,
            connections: usize::MAX,
        });
        let (empty, oldest, older, newer) =
            (crowd.seat(0), crowd.seat(0), crowd.seat(0), crowd.seat(0));
        assert_eq!(oldest.hold_head_bytes(300), HeadRoom::Held);
        assert_eq!(older.hold_head_bytes(300), HeadRoom::Held);
        // 1,300 held: the oldest holding bytes goes, and that is enough.
        assert_eq!(newer.hold_head_bytes(700), HeadRoom::HeldForOldest(1));
        assert!(oldest.is_shed() && !older.is_shed() && !newer.is_shed());
        assert!(!empty.is_shed(), "a head holding nothing frees nothing");
        // Released after it was counted free: nothing counted twice. Now
        // the oldest holding bytes is the one asking: it goes itself.
        oldest.release_head_bytes();
        assert_eq!(empty.hold_head_bytes(100), HeadRoom::HeldForOldest(1));
        assert!(empty.is_shed() && !older.is_shed() && !newer.is_shed());
        // As many go as it takes, oldest first.
        assert_eq!(newer.hold_head_bytes(500), HeadRoom::HeldForOldest(2));
        assert!(older.is_shed() && newer.is_shed());
        // No head to close: a connection that is not reading one is refused.
        let busy = crowd.seat(0);
        busy.busy();
        assert_eq!(busy.hold_head_bytes(2000), HeadRoom::Full);
        assert_eq!(busy.hold_head_bytes(900), HeadRoom::Held);
    }

    #[test]
    fn heads_borrow_what_the_cache_leaves_and_give_it_back_when_it_stores() {
        let cache = CacheShare::new(1000);
        let closed = Arc::new(AtomicUsize::new(0));
        let count = closed.clone();
        let budgets = Budgets {
            heads: 1000,
            connections: usize::MAX,
        };
        let crowd = Crowd::new(
            budgets,
            cache.clone(),
            Box::new(move |n| {
                count.fetch_add(n, Ordering::Relaxed);
            }),
        );
        let (oldest, older, newer) = (crowd.seat(0), crowd.seat(0), crowd.seat(0));
        // The cache empty: 2,000 bytes for heads.
        assert_eq!(oldest.hold_head_bytes(800), HeadRoom::Held);
        assert_eq!(older.hold_head_bytes(800), HeadRoom::Held);
        assert_eq!(newer.hold_head_bytes(400), HeadRoom::Held);
        // The cache stores 300: 1,700 left, the oldest head goes.
        cache.cache_holds(300);
        assert!(oldest.is_shed() && !older.is_shed() && !newer.is_shed());
        assert_eq!(closed.load(Ordering::Relaxed), 1);
        // Storing within what is left closes none.
        cache.cache_holds(400);
        assert!(!older.is_shed());
        // A full cache leaves heads their own budget: 1,200 held, one more goes.
        cache.cache_holds(5000);
        assert!(older.is_shed() && !newer.is_shed());
        assert_eq!(closed.load(Ordering::Relaxed), 2);
        // A head growing past it closes the oldest, reported the same way.
        let last = crowd.seat(0);
        assert_eq!(last.hold_head_bytes(700), HeadRoom::HeldForOldest(1));
        assert!(newer.is_shed());
        assert_eq!(closed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn connections_weigh_until_they_close_or_are_shed() {
        let crowd = crowd(Budgets {
            heads: usize::MAX,
            connections: 100,
        });
        let (idle, busy) = (crowd.seat(40), crowd.seat(40));
        busy.busy();
        idle.busy();
        idle.idle();
        assert!(!crowd.overweight());
        // Turning out heavier takes it past the budget; room made, the idle
        // one goes, its weight free.
        busy.weigh_more(30);
        assert!(crowd.overweight());
        assert_eq!(crowd.make_room(), Some(Shed::Idle));
        assert!(idle.is_shed() && !crowd.overweight());
        drop(idle);
        let heavy = crowd.seat(70);
        assert!(crowd.overweight());
        drop(heavy);
        assert!(!crowd.overweight());
    }

    #[test]
    fn streams_keep_a_connection_busy_until_the_last_ends() {
        let crowd = crowd(UNBOUNDED);
        let seat = crowd.seat(0);
        let (a, b) = (seat.stream_opened(), seat.stream_opened());
        drop(a);
        assert_eq!(crowd.make_room(), None);
        drop(b);
        assert_eq!(crowd.make_room(), Some(Shed::Idle));
    }
}
