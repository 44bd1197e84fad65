//! The connection layer: one client connection's socket and what the
//! requests on it share.
//!
//! Owns the socket wrapper hyper reads and writes through (`socket`: the
//! timeouts, the head scan that numbers requests, sending files in place of
//! stand-ins), the per-connection state the pipeline reads (`state`), and
//! the zero-copy file slots (`zero_copy`), the 103 Early Hints written
//! between hyper's messages (`interim`), each connection's place in the
//! crowd that gives way at the connection limit (`crowd`), and the cache's
//! share of memory the heads being read borrow (`cache_share`).
//!
//! May call: http (the head scanner). May not call the pipeline or the
//! server: they hold a connection, a connection does not know them.

pub mod accept;
pub mod cache_share;
pub mod crowd;
pub mod interim;
pub mod socket;
pub mod state;
pub mod zero_copy;
