//! jemalloc as thrust's allocator, set to give freed memory back soon.
//!
//! glibc's malloc left the pages of a burst's request buffers in use by
//! the few small blocks each parked connection keeps (6–7 KiB of RSS per
//! idle connection for 2.6 KiB live), needed a `malloc_trim` that holds
//! each arena's lock while it walks the heap, and crept under a steady mix
//! of cache stores and compressions unless its arenas were capped.
//! jemalloc keeps small blocks of one size together in their own pages and
//! purges the pages that empty: benches/RESULTS.md, "The allocator".

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc when it starts (`_RJEM_MALLOC_CONF` in the environment
/// still overrides each setting):
/// - `background_thread`: jemalloc's own threads purge free pages, not the
///   worker whose free left them, and not only when it next allocates;
/// - `dirty_decay_ms:1000`: pages freed stay for reuse about a second (the
///   default is ten) before they go back to the system;
/// - `muzzy_decay_ms:0`: and then go back at once (`MADV_DONTNEED`, which
///   lowers RSS where the lazy `MADV_FREE` would not until memory is short);
/// - `tcache_gc_incr_bytes:4194304`: each thread sorts out the blocks its
///   cache holds once per 4 MiB it allocates, not per 64 KiB: each sorting
///   hands back most of the 8 KiB buffers it keeps (hyper's, one a slab),
///   which the next requests then fetch again one slab at a time. Once per
///   MiB saved 1.7–3.7% of a request's instructions, once per 4 MiB 2.5%
///   more on a parked connection's, with idle connections holding the
///   same (benches/RESULTS.md, "Parked connections hold less", "Fewer
///   instructions a request");
/// - `slab_sizes:8192-10240:10`: blocks of 8 and 10 KiB (hyper's read and
///   write buffers, made anew each time a parked connection wakes) five or
///   four to a 40 KiB slab, not one each: a slab is fetched and handed
///   back through the page allocator, so with one block to a slab every
///   wake paid for two (parked requests 65,362 -> 61,531 instructions,
///   idle connections holding the same; benches/RESULTS.md, "Fewer
///   instructions a request").
#[export_name = "_rjem_malloc_conf"]
static SETTINGS: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a C string literal lives for the whole program.
    unsafe {
        &*c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_gc_incr_bytes:4194304,slab_sizes:8192-10240:10"
            .as_ptr()
    },
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_settings_are_the_ones_jemalloc_runs_with() {
        assert_eq!(tikv_jemalloc_ctl::background_thread::read(), Ok(true));
        let decay = |name: &str| {
            // SAFETY: both are `ssize_t` options, read as such.
            unsafe { tikv_jemalloc_ctl::raw::read::<isize>(name.as_bytes()) }
        };
        assert_eq!(decay("opt.dirty_decay_ms\0"), Ok(1000));
        assert_eq!(decay("opt.muzzy_decay_ms\0"), Ok(0));
        // SAFETY: a `size_t` option, read as such.
        let gc = unsafe { tikv_jemalloc_ctl::raw::read::<usize>(b"opt.tcache_gc_incr_bytes\0") };
        assert_eq!(gc, Ok(4 << 20));
        // SAFETY: an `unsigned` value, read as such.
        let bins = unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"arenas.nbins\0") };
        let slab_of = |size: usize| {
            // SAFETY: `size_t` values of an existing bin, read as such.
            (0..bins.unwrap_or(0)).find_map(|bin| unsafe {
                let key = |field: &str| format!("arenas.bin.{bin}.{field}\0");
                let bin_size = tikv_jemalloc_ctl::raw::read::<usize>(key("size").as_bytes());
                (bin_size == Ok(size))
                    .then(|| tikv_jemalloc_ctl::raw::read::<usize>(key("slab_size").as_bytes()))
            })
        };
        assert_eq!(slab_of(8192), Some(Ok(40960)));
        assert_eq!(slab_of(10240), Some(Ok(40960)));
    }
}
