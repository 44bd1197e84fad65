//! Coalesced misses (nginx's `proxy_cache_lock`, Varnish's request
//! coalescing): while one request for a URL is at the app and its answer
//! may be stored, other misses for the same URL wait for it instead of
//! going to the app too — after a deploy every asset is cold, and a page's
//! first visitors all ask for the same ones at once.
//!
//! The first miss leads (`Turn::Lead`); its `Leader` travels with the plan
//! to store the answer and is dropped once the entry is in the cache, or
//! the answer turns out not to be storable, or the request ends any other
//! way. The others (`Turn::Wait`) wait for that, at most `WAIT_AT_MOST`,
//! then look the cache up again: a hit is answered from it, compressed
//! variants and all; otherwise they go to the app themselves, without
//! waiting again.
//!
//! A URL whose answer was not storable is remembered for `PASS_FOR`
//! (Varnish's hit-for-miss): its requests go straight to the app, so
//! concurrent requests for a dynamic page are never queued behind each
//! other. At most `MAX_PASSES` are remembered; past it, a URL is simply
//! not remembered.
//!
//! URLs are known by the 64-bit keyed hash the cache looks them up by
//! (`ResponseCache::hash`), computed once per request: two URLs sharing
//! one would at worst make a miss wait for the other's answer, then go to
//! the app.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nohash_hasher::IntMap;
use tokio::sync::watch;

/// How long a miss waits for the one ahead of it before going to the app
/// itself (nginx's `proxy_cache_lock_timeout` default).
pub const WAIT_AT_MOST: Duration = Duration::from_secs(5);
/// How long a URL found not storable goes straight to the app.
pub const PASS_FOR: Duration = Duration::from_secs(60);
/// URLs remembered as not storable, at most (24 bytes each).
const MAX_PASSES: usize = 65_536;

#[derive(Default)]
pub struct Flights {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By the URL's hash (already uniform: no hashing again).
    flights: IntMap<u64, Flight>,
    /// How many of them are `Flight::Pass`.
    passing: usize,
}

enum Flight {
    /// A request is at the app; its leader's sender drops when it is done.
    Pending(watch::Receiver<()>),
    /// Not storable: straight to the app until then.
    Pass(Instant),
}

/// What a miss does.
pub enum Turn {
    /// Goes to the app; the others wait for it.
    Lead(Leader),
    /// Waits for the request ahead (`Waiting::done`).
    Wait(Waiting),
    /// Goes to the app without leading: known not storable, or the wait is over.
    Pass,
}

impl Flights {
    /// The turn of a miss for the URL hashed `key`.
    pub fn turn(self: &Arc<Self>, key: u64) -> Turn {
        let mut inner = self.lock();
        match inner.flights.get(&key) {
            Some(Flight::Pending(done)) => return Turn::Wait(Waiting(done.clone())),
            Some(Flight::Pass(until)) if *until > Instant::now() => return Turn::Pass,
            Some(Flight::Pass(_)) => {
                inner.passing -= 1;
                inner.flights.remove(&key);
            }
            None => {}
        }
        let (sender, receiver) = watch::channel(());
        inner.flights.insert(key, Flight::Pending(receiver));
        Turn::Lead(Leader {
            flights: self.clone(),
            key,
            _done: sender,
            storable: true,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The request at the app for a URL others wait on. Dropped when its answer
/// is stored or will not be: the waiters wake (its sender goes last).
pub struct Leader {
    flights: Arc<Flights>,
    key: u64,
    _done: watch::Sender<()>,
    storable: bool,
}

impl Leader {
    /// The answer may not be stored (its head, its size): the URL goes
    /// straight to the app for a while.
    pub fn not_storable(mut self) {
        self.storable = false;
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut inner = self.flights.lock();
        if self.storable {
            inner.flights.remove(&self.key);
            return;
        }
        if inner.passing >= MAX_PASSES {
            // Make room from the expired ones.
            let now = Instant::now();
            inner
                .flights
                .retain(|_, flight| !matches!(flight, Flight::Pass(until) if *until <= now));
            inner.passing = inner
                .flights
                .values()
                .filter(|f| matches!(f, Flight::Pass(_)))
                .count();
        }
        if inner.passing >= MAX_PASSES {
            inner.flights.remove(&self.key);
            return;
        }
        inner.passing += 1;
        let until = Instant::now() + PASS_FOR;
        inner.flights.insert(self.key, Flight::Pass(until));
    }
}

/// A miss waiting for the one ahead of it.
pub struct Waiting(watch::Receiver<()>);

impl Waiting {
    /// Completes when the request ahead is done, or after `WAIT_AT_MOST`.
    pub async fn done(mut self) {
        let _ = tokio::time::timeout(WAIT_AT_MOST, self.0.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn misses_wait_for_the_leader_and_then_lead_again() {
        let flights = Arc::new(Flights::default());
        let Turn::Lead(leader) = flights.turn(1) else {
            panic!("the first miss leads");
        };
        let Turn::Wait(waiting) = flights.turn(1) else {
            panic!("the second waits");
        };
        assert!(matches!(flights.turn(2), Turn::Lead(_)));
        drop(leader);
        waiting.done().await;
        // Done: the next miss (the entry expired, say) leads again.
        assert!(matches!(flights.turn(1), Turn::Lead(_)));
    }

    #[tokio::test]
    async fn a_url_not_storable_goes_straight_to_the_app() {
        let flights = Arc::new(Flights::default());
        let Turn::Lead(leader) = flights.turn(7) else {
            panic!("the first miss leads");
        };
        let Turn::Wait(waiting) = flights.turn(7) else {
            panic!("the second waits");
        };
        leader.not_storable();
        waiting.done().await;
        assert!(matches!(flights.turn(7), Turn::Pass));
    }

    #[test]
    fn remembered_passes_stay_bounded() {
        let flights = Arc::new(Flights::default());
        for key in 0..MAX_PASSES as u64 + 10 {
            if let Turn::Lead(leader) = flights.turn(key) {
                leader.not_storable();
            }
        }
        assert_eq!(flights.lock().passing, MAX_PASSES);
        assert_eq!(flights.lock().flights.len(), MAX_PASSES);
    }
}
