//! What happens when a served client connection is over: an error is worth
//! a debug line, and an HTTP/2 client on the HTTP/1-only port is worth a
//! warning, since it fails there for a reason only the operator can fix
//! (`H2C_ENABLED`).

use std::fmt::Display;
use std::time::Duration;

use crate::log::throttle::Throttle;

/// A client that keeps trying gets one warning a minute, not one a connection.
static HTTP2_ON_HTTP1: Throttle = Throttle::new(Duration::from_secs(60));

/// The error a connection ended with.
pub trait ConnectionError: Display {
    /// The client opened with HTTP/2's preface where only HTTP/1 is served.
    fn is_http2_on_http1(&self) -> bool;
}

impl ConnectionError for hyper::Error {
    fn is_http2_on_http1(&self) -> bool {
        self.is_parse_version_h2()
    }
}

/// HTTP/2 connections, served where it is on.
impl ConnectionError for h2::Error {
    fn is_http2_on_http1(&self) -> bool {
        false
    }
}

/// The connection failed before its protocol was known.
impl ConnectionError for std::io::Error {
    fn is_http2_on_http1(&self) -> bool {
        false
    }
}

pub fn ended<E: ConnectionError>(result: Result<(), E>) {
    let Err(e) = result else { return };
    if e.is_http2_on_http1() && HTTP2_ON_HTTP1.due() {
        tracing::warn!(
            "An HTTP/2 client without TLS was turned away: set H2C_ENABLED=1 to serve HTTP/2 cleartext on the HTTP port"
        );
    } else {
        tracing::debug!(error = %e, "Connection ended with an error");
    }
}
