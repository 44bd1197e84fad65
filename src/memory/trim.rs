//! Giving memory freed by closed and parked connections (client ones, and
//! idle app connections a quiet pool closes) back to the system.
//!
//! glibc's allocator keeps freed memory for reuse: after a thousand
//! connections close, thrust's RSS would stay where their peak left it.
//! Once a second, if at least `BATCH` connections were closed or parked
//! since the last time, `malloc_trim` returns the free pages. A steady load
//! on kept-alive connections never triggers it.
//!
//! A trim walks every free chunk of the heap, holding each arena's lock in
//! turn, and the workers allocating from the arena it holds wait: with ten
//! thousand clients parking and waking every second a trim took 0.4 to
//! 11 ms, and it grows with the heap. So it runs off the workers, and the
//! next one waits `SPACING` times as long as the last one took: trims hold
//! the allocator for at most a hundredth of the time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Closed or parked connections since the last trim.
static RELEASED: AtomicUsize = AtomicUsize::new(0);

const BATCH: usize = 64;

/// The time from one trim to the next, at least, in multiples of how long
/// the earlier one took.
const SPACING: u32 = 100;

/// Counts a connection closed or parked.
pub fn released() {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// Trims once a second at most while enough connections let go of their
/// memory, spaced by what the trims cost.
pub async fn keep_trimmed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut not_before = Instant::now();
    loop {
        tick.tick().await;
        if Instant::now() < not_before || RELEASED.load(Ordering::Relaxed) < BATCH {
            continue;
        }
        RELEASED.store(0, Ordering::Relaxed);
        let started = Instant::now();
        // A join error would be a panic in trim: nothing to do about it here.
        let _ = tokio::task::spawn_blocking(trim).await;
        not_before = started + started.elapsed() * SPACING;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
