//! The allocator's own figures, read at scrape time: with RSS beside them
//! they tell a leak (bytes in use keep rising) from fragmentation (in use
//! flat, RSS rising), which RSS alone cannot.

/// Bytes the program has allocated and not freed, and bytes the allocator
/// holds free in its arenas (some of them already given back to the system
/// by `malloc_trim`, so they need not count in RSS).
pub struct Heap {
    pub in_use: u64,
    pub free: u64,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn read() -> Option<Heap> {
    // SAFETY: mallinfo2 only reads the allocator's statistics (it takes each
    // arena's lock while it adds them up).
    let info = unsafe { libc::mallinfo2() };
    let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Some(Heap {
        in_use: bytes(info.uordblks).saturating_add(bytes(info.hblkhd)),
        free: bytes(info.fordblks),
    })
}

/// Other allocators keep other statistics: no figures.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn read() -> Option<Heap> {
    None
}
