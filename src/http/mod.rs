//! The HTTP layer: the header grammar thrust reads from clients and from the
//! app, each parser in its own file and free of I/O (what a header says, not
//! what thrust does about it), the body types every layer passes around, and
//! the client's side of an upgrade (`upgrade`).
//!
//! May call: config (the encodings a client may be offered). May not call
//! any other layer: everything above is built on it.

pub mod accept_encoding;
pub mod body;
pub mod cache_control;
pub mod conditional;
pub mod date;
pub mod head_scan;
pub mod headers;
pub mod range;
pub mod upgrade;
