//! The protocols a listener speaks: HTTP/1.1 alone, or HTTP/1.1 and HTTP/2
//! (told apart by ALPN, or by the connection preface where there is none).

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;

use super::http2;
use crate::http::head_scan::MAX_HEAD_BYTES;

pub enum Protocols {
    /// Only HTTP/1.1. Both use hyper's connection with vectored writes for
    /// HTTP/1, so file bodies may be sent as stand-ins on plain connections
    /// (`conn::zero_copy`).
    Http1(http1::Builder),
    Both {
        http1: http1::Builder,
        http2: h2::server::Builder,
    },
}

impl Protocols {
    pub fn new(http2: bool) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // The head's deadline is kept by ConnIo, which knows idle from reading.
            .header_read_timeout(None)
            // At most 100 header lines (hyper's default, and Apache's
            // LimitRequestFields), more get 431: any other count makes hyper
            // allocate 32 bytes a line for each request it parses, where
            // 100 fit on its stack.
            .max_buf_size(MAX_HEAD_BYTES);
        // Body bytes queued as given, never copied into a flat buffer: file
        // stand-ins on plain connections rely on it (zero_copy).
        builder.writev(true);
        if !http2 {
            return Protocols::Http1(builder);
        }
        Protocols::Both {
            http1: builder,
            http2: http2::settings(),
        }
    }
}
