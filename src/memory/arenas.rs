//! How many heaps (arenas) glibc's allocator keeps: one per worker, set
//! before any thread starts.
//!
//! glibc gives each new thread an arena of its own, up to eight per CPU:
//! thrust's workers, each worker runtime's blocking threads (compression,
//! file reads) and the log writer end up with ten or more. Each arena keeps
//! the free memory its churn leaves between live allocations, so under a
//! steady mix of cache stores, evictions and compressions RSS crept up
//! while the bytes in use stayed flat (reliability/soak.py: 23 → 28 MiB in
//! four minutes with about 3.5 MiB in use; 22 MiB and flat with the arenas
//! capped). Threads beyond the cap share arenas; small allocations still
//! come from each thread's own cache without a lock.
//!
//! A user who sets MALLOC_ARENA_MAX or the glibc.malloc.arena_max tunable
//! keeps their choice.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn cap(workers: usize) {
    let chosen = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc.arena_max"));
    if chosen {
        return;
    }
    let arenas = libc::c_int::try_from(workers.max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes the allocator's settings; it is called
    // before thrust starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other allocators choose for themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn cap(_workers: usize) {}
