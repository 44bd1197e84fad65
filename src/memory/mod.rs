//! The allocator: jemalloc, which gives the pages that closed and parked
//! connections free back to the system by itself (`allocator`), and its
//! figures for /metrics (`heap`). What thrust asks of the allocator lives
//! here, so that a different one would be one folder's change.
//!
//! May call: nothing of thrust's. The metrics layer reads `heap`.

mod allocator;
pub mod heap;
