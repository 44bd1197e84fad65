//! The allocator: glibc's malloc kept to one heap per worker (`arenas`),
//! and the memory that closed and parked connections free given back to
//! the system (`trim`). What thrust asks of malloc beyond allocating lives
//! here, so that a different allocator would be one folder's change.
//!
//! May call: nothing of thrust's. The server and the command line call it.

pub mod arenas;
pub mod trim;
