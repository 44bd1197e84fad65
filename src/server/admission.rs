//! THRUST_MAX_CONNECTIONS: how many client connections may be open at once.
//!
//! Past the limit a new connection is still accepted — left in the kernel's
//! backlog it would only time out — and answered at once: a plain one with
//! `503 Service Unavailable` and `Retry-After`, an HTTPS one by closing it
//! (no handshake is spent on it). At most `MAX_REFUSING` refused connections
//! are being answered at once; beyond that a refused connection is closed
//! at once, so a flood costs no memory. The default limit is sized by
//! `memory_budget` from the container's memory and the open-file limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// At most one warning this often while connections are being refused.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Refused connections being answered (each for at most a second) at once.
const MAX_REFUSING: usize = 256;

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 34\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
\r\n\
server busy: too many connections\n";

pub struct Admission {
    limit: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// One admitted connection; the count goes down when it is dropped.
pub struct Admitted(Arc<Admission>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `configured`, or `default` (see `memory_budget`).
    pub fn new(configured: Option<usize>, default: u64) -> Arc<Self> {
        Arc::new(Admission {
            limit: configured.unwrap_or(usize::try_from(default).unwrap_or(usize::MAX)),
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counts a new connection in, or refuses it when the limit is reached.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let admitted = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .is_ok();
        if admitted {
            return Some(Admitted(self.clone()));
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut last) = self.last_warning.lock() else {
            return None;
        };
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                limit = self.limit,
                refused_so_far = refused,
                "Connection limit reached (THRUST_MAX_CONNECTIONS): new connections are refused"
            );
        }
        None
    }
}

/// A refused plain connection being answered; the count of those goes down
/// when it is dropped.
pub struct Refusal(Arc<Admission>);

impl Drop for Refusal {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// Room to answer one more refused connection, if fewer than
    /// `MAX_REFUSING` are being answered.
    pub fn refusal(self: &Arc<Self>) -> Option<Refusal> {
        self.refusing
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_REFUSING).then_some(n + 1)
            })
            .ok()
            .map(|_| Refusal(self.clone()))
    }
}

/// Answers a plain connection over the limit with 503 and closes it. The
/// client's request is read (briefly, boundedly) before the close, so the
/// close does not reset the connection and lose the answer.
pub async fn refuse(refusal: Refusal, mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    })
    .await;
    drop(refusal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_open_connections() {
        assert_eq!(Admission::new(None, 384).limit(), 384);
        assert_eq!(Admission::new(Some(7), 384).limit(), 7);
        let admission = Admission::new(Some(2), 384);
        let first = admission.admit().unwrap();
        let _second = admission.admit().unwrap();
        assert!(admission.admit().is_none());
        drop(first);
        assert!(admission.admit().is_some());
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
