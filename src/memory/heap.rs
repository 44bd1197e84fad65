//! The allocator's own figures, read at scrape time: with RSS beside them
//! they tell a leak (bytes in use keep rising) from fragmentation (in use
//! flat, RSS rising), which RSS alone cannot.

/// Bytes the program has allocated and not freed, and bytes the allocator
/// keeps resident beyond them: free room in its pages, pages freed and not
/// yet purged, and its own bookkeeping.
pub struct Heap {
    pub in_use: u64,
    pub free: u64,
}

pub fn read() -> Option<Heap> {
    // jemalloc refreshes its statistics when the epoch moves.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let in_use = tikv_jemalloc_ctl::stats::allocated::read().ok()?;
    let resident = tikv_jemalloc_ctl::stats::resident::read().ok()?;
    let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Some(Heap {
        in_use: bytes(in_use),
        free: bytes(resident.saturating_sub(in_use)),
    })
}
