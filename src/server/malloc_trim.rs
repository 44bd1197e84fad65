//! Giving memory freed by closed and parked connections (client ones, and
//! idle app connections a quiet pool closes) back to the system.
//!
//! glibc's allocator keeps freed memory for reuse: after a thousand
//! connections close, thrust's RSS would stay where their peak left it.
//! Once a second, if at least `BATCH` connections were closed or parked
//! since the last time, `malloc_trim` returns the free pages. A steady load
//! on kept-alive connections never triggers it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Closed or parked connections since the last trim.
static RELEASED: AtomicUsize = AtomicUsize::new(0);

const BATCH: usize = 64;

/// Counts a connection closed or parked.
pub fn released() {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// Trims once a second while enough connections let go of their memory.
pub async fn keep_trimmed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if RELEASED.load(Ordering::Relaxed) >= BATCH {
            RELEASED.store(0, Ordering::Relaxed);
            trim();
        }
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
