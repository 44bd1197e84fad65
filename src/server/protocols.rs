//! The hyper connection builders for a listener: HTTP/1.1 alone, or HTTP/1.1
//! and HTTP/2.

use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::http::head_scan::MAX_HEAD_BYTES;

/// HTTP/1.1 alone, or HTTP/1.1 and HTTP/2 told apart by the connection
/// preface (`either`), with HTTP/2 alone for clients that chose h2 by ALPN.
pub enum Protocols {
    Http1(http1::Builder),
    Auto {
        either: Box<auto::Builder<TokioExecutor>>,
        http2: Box<auto::Builder<TokioExecutor>>,
    },
}

impl Protocols {
    pub fn new(http2: bool) -> Self {
        if !http2 {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                // Body bytes queued as given, never copied into a flat
                // buffer: file stand-ins rely on it (zero_copy).
                .writev(true)
                // The head's deadline is kept by ConnIo, which knows idle from reading.
                .header_read_timeout(None)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(256);
            return Protocols::Http1(builder);
        }
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(256);
        builder
            .http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(250)
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        Protocols::Auto {
            http2: Box::new(builder.clone().http2_only()),
            either: Box::new(builder),
        }
    }
}
