//! THRUST_MAX_CONNECTIONS: how many client connections may be open at once.
//!
//! At the limit a new connection first gets room from the crowd
//! (`conn::crowd`): the longest idle keep-alive connection is closed, or
//! else the one whose request head has been coming longest (at least
//! `HEAD_GRACE`). Only when every connection is busy is the new one
//! refused. It is still accepted — left in the kernel's backlog it would
//! only time out — and answered at once: a plain one with `503 Service
//! Unavailable` and `Retry-After`, an HTTPS one by closing it (no
//! handshake is spent on it). At most `MAX_REFUSING` refused connections
//! are being answered at once; beyond that a refused connection is closed
//! at once, so a flood costs no memory. The default limit is sized by
//! `memory_budget` from the container's memory and the open-file limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::memory_budget::ConnectionBudget;
use crate::conn::cache_share::CacheShare;
use crate::conn::crowd::{Budgets, Crowd, HeadsClosed, Seat, Shed};
use crate::log::throttle::Throttle;
use crate::metrics::Metrics;

/// At most one warning this often while the limit is reached, and while
/// heads are closed for memory.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Connections closed at most to make room for one heavier than each.
const MAX_SHED_FOR_WEIGHT: usize = 8;
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
    crowd: Arc<Crowd>,
    refusing: AtomicUsize,
    /// Connections refused, and closed to make room (idle, slow heads).
    refused: AtomicU64,
    shed: [AtomicU64; 2],
    warnings: Throttle,
    metrics: Option<Arc<Metrics>>,
}

/// One admitted connection and its seat in the crowd; the count goes down
/// when it is dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    seat: Arc<Seat>,
}

impl Admitted {
    pub fn seat(&self) -> &Arc<Seat> {
        &self.seat
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `configured`, or the budget's default (see `memory_budget`): then
    /// the connections also weigh, each by its kind, against the budget's
    /// bytes for them. Heads being read share the budget's head bytes
    /// and what the cache leaves of its share, whatever the limit.
    pub fn new(
        configured: Option<usize>,
        budget: ConnectionBudget,
        cache: Arc<CacheShare>,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let budgets = Budgets {
            heads: usize_of(budget.head_bytes),
            connections: match configured {
                Some(_) => usize::MAX,
                None => usize_of(budget.connection_bytes),
            },
        };
        Arc::new(Admission {
            limit: configured.unwrap_or(usize_of(budget.connections)),
            open: AtomicUsize::new(0),
            crowd: Crowd::new(budgets, cache, heads_closed(metrics.clone())),
            refusing: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            shed: [AtomicU64::new(0), AtomicU64::new(0)],
            warnings: Throttle::new(WARN_EVERY),
            metrics,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counts a new connection weighing `weight` bytes in — at the limit,
    /// or past the connections' weight, once the crowd has made room for
    /// it — or refuses it when every connection is busy.
    pub fn admit(self: &Arc<Self>, weight: usize) -> Option<Admitted> {
        let admitted = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            // The one closed frees its place as it goes; the new one takes
            // it now, so the count is briefly over the limit.
            let shed = self.crowd.make_room();
            self.at_limit(shed);
            shed?;
            self.open.fetch_add(1, Ordering::Relaxed);
        }
        let admitted = Admitted {
            admission: self.clone(),
            seat: self.crowd.seat(weight),
        };
        // A heavy newcomer (TLS) may need the room of a few light ones.
        if !self.shed_while_overweight() {
            self.at_limit(None);
            return None;
        }
        (!self.crowd.overweight()).then_some(admitted)
    }

    /// thrust is stopping: connections waiting for bytes close at once
    /// (`Crowd::stop`).
    pub fn stop(&self) {
        self.crowd.stop();
    }

    /// The connection on `seat` turned out to weigh `more` bytes more (an
    /// HTTP/2 one's state): past the connections' weight, room is made as
    /// for a newcomer, counted and warned about the same way.
    pub fn weigh_more(&self, seat: &Seat, more: usize) {
        seat.weigh_more(more);
        // With no room to make (every other connection busy) this one stays
        // open all the same; the next newcomer finds the crowd full.
        self.shed_while_overweight();
    }

    /// Closes connections for room, each counted, up to `MAX_SHED_FOR_WEIGHT`
    /// while the open ones weigh past their budget; false if the crowd had
    /// none to close (every connection busy).
    fn shed_while_overweight(&self) -> bool {
        for _ in 0..MAX_SHED_FOR_WEIGHT {
            if !self.crowd.overweight() {
                return true;
            }
            let Some(shed) = self.crowd.make_room() else {
                return false;
            };
            self.at_limit(Some(shed));
        }
        true
    }

    /// Counts a connection closed for room (`Some`) or refused (`None`),
    /// with a warning now and then.
    fn at_limit(&self, shed: Option<Shed>) {
        let counter = match shed {
            Some(reason) => &self.shed[reason as usize],
            None => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.connection_turned_away(shed.map(|reason| reason as usize));
        }
        if !self.warnings.due() {
            return;
        }
        let so_far = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (refused, idle, slow) = (
            so_far(&self.refused),
            so_far(&self.shed[Shed::Idle as usize]),
            so_far(&self.shed[Shed::SlowHead as usize]),
        );
        if shed.is_some() {
            tracing::warn!(limit = self.limit, closed_idle_so_far = idle, closed_slow_heads_so_far = slow, refused_so_far = refused,
                "Connection limit reached (THRUST_MAX_CONNECTIONS): idle connections and slow request heads are closed to admit new ones");
        } else {
            tracing::warn!(limit = self.limit, closed_idle_so_far = idle, closed_slow_heads_so_far = slow, refused_so_far = refused,
                "Connection limit reached (THRUST_MAX_CONNECTIONS): every connection is busy, new connections are refused");
        }
    }
}

/// Counts heads closed for memory, with a warning now and then.
fn heads_closed(metrics: Option<Arc<Metrics>>) -> HeadsClosed {
    let warnings = Throttle::new(WARN_EVERY);
    Box::new(move |closed| {
        if let Some(metrics) = &metrics {
            metrics.heads_closed_for_memory(closed);
        }
        if warnings.due() {
            tracing::warn!("Request heads being read hold their whole memory budget: the oldest are closed for room");
        }
    })
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

    const BUDGET: ConnectionBudget = ConnectionBudget {
        connections: 384,
        connection_bytes: 384 * 4096,
        head_bytes: 1 << 20,
        cache_lendable: 0,
    };

    #[test]
    fn the_limit_counts_open_connections() {
        assert_eq!(
            Admission::new(None, BUDGET, CacheShare::new(0), None).limit(),
            384
        );
        assert_eq!(
            Admission::new(Some(7), BUDGET, CacheShare::new(0), None).limit(),
            7
        );
        let admission = Admission::new(Some(2), BUDGET, CacheShare::new(0), None);
        let first = admission.admit(4096).unwrap();
        let second = admission.admit(4096).unwrap();
        first.seat().busy();
        second.seat().busy();
        assert!(admission.admit(4096).is_none());
        drop(first);
        assert!(admission.admit(4096).is_some());
    }

    #[test]
    fn at_the_limit_an_idle_connection_makes_room() {
        let admission = Admission::new(Some(1), BUDGET, CacheShare::new(0), None);
        let idle = admission.admit(4096).unwrap();
        idle.seat().busy();
        idle.seat().idle();
        let new = admission.admit(4096).unwrap();
        assert!(idle.seat().is_shed() && !new.seat().is_shed());
    }

    /// `count` plain connections admitted, each answered once and idle.
    fn idle_plain(admission: &Arc<Admission>, count: usize) -> Vec<Admitted> {
        let idle: Vec<_> = (0..count).map(|_| admission.admit(4096).unwrap()).collect();
        for admitted in &idle {
            admitted.seat().busy();
            admitted.seat().idle();
        }
        idle
    }

    #[test]
    fn heavy_connections_take_the_room_of_light_ones() {
        let admission = Admission::new(None, BUDGET, CacheShare::new(0), None);
        let light = idle_plain(&admission, 380);
        // 20 KiB where 16 are left: the longest idle makes room.
        let heavy = admission.admit(20 << 10).unwrap();
        assert!(light[0].seat().is_shed() && !light[1].seat().is_shed());
        heavy.seat().busy();
        drop(light);
        // Every one busy and the weight spent: refused, though under the count.
        let busy: Vec<_> = (0..75)
            .map(|_| admission.admit(20 << 10).unwrap())
            .collect();
        busy.iter().for_each(|b| b.seat().busy());
        assert!(admission.admit(20 << 10).is_none());
        assert!(admission.admit(4096).is_some());
    }

    #[test]
    fn a_connection_found_heavier_makes_room_and_is_counted() {
        let admission = Admission::new(None, BUDGET, CacheShare::new(0), None);
        let light = idle_plain(&admission, 384);
        // The newest turns out to speak HTTP/2: 32 KiB more, the 8 longest
        // idle go.
        let h2 = &light[383];
        h2.seat().busy();
        admission.weigh_more(h2.seat(), 32 << 10);
        let shed: Vec<bool> = light.iter().map(|a| a.seat().is_shed()).collect();
        assert!(shed[..8].iter().all(|s| *s) && !shed[8..].iter().any(|s| *s));
        assert_eq!(
            admission.shed[Shed::Idle as usize].load(Ordering::Relaxed),
            8
        );
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
