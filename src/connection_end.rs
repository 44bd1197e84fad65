//! What happens when a served client connection is over: its memory counts
//! toward the next trim, an error is worth a debug line, and an HTTP/2
//! client on the HTTP/1-only port is worth a warning, since it fails there
//! for a reason only the operator can fix (`H2C_ENABLED`).

use std::error::Error as StdError;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A client that keeps trying gets one warning a minute, not one a connection.
const WARN_EVERY: Duration = Duration::from_secs(60);

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

/// hyper-util's connection that serves both protocols: HTTP/2 is served.
impl ConnectionError for Box<dyn StdError + Send + Sync> {
    fn is_http2_on_http1(&self) -> bool {
        false
    }
}

pub fn ended<E: ConnectionError>(result: Result<(), E>) {
    crate::memory::released();
    let Err(e) = result else { return };
    if e.is_http2_on_http1() && warning_due() {
        tracing::warn!(
            "An HTTP/2 client without TLS was turned away: set H2C_ENABLED=1 to serve HTTP/2 cleartext on the HTTP port"
        );
    } else {
        tracing::debug!(error = %e, "Connection ended with an error");
    }
}

/// True at most once per `WARN_EVERY`.
fn warning_due() -> bool {
    static START: OnceLock<Instant> = OnceLock::new();
    // Seconds since START of the last warning, plus one (0: never warned).
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = START.get_or_init(Instant::now).elapsed().as_secs() + 1;
    let last = LAST.load(Ordering::Relaxed);
    (last == 0 || now >= last + WARN_EVERY.as_secs())
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}
