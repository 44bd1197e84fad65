//! The HTTP header grammar thrust reads from clients and from the app, each
//! parser in its own file, free of I/O: what a header says, not what thrust
//! does about it.

pub mod accept_encoding;
pub mod cache_control;
pub mod conditional;
pub mod head_scan;
pub mod headers;
pub mod range;
