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
//! other. Those memories are bounded in bytes (`PASS_BUDGET`); past it, a
//! URL is simply not remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::store::BaseKey;

/// How long a miss waits for the one ahead of it before going to the app
/// itself (nginx's `proxy_cache_lock_timeout` default).
pub const WAIT_AT_MOST: Duration = Duration::from_secs(5);
/// How long a URL found not storable goes straight to the app.
pub const PASS_FOR: Duration = Duration::from_secs(60);
/// Bytes of URLs remembered as not storable, at most.
const PASS_BUDGET: usize = 1 << 20;

#[derive(Default)]
pub struct Flights {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    flights: HashMap<BaseKey, Flight>,
    /// Bytes of the keys of `Flight::Pass` entries.
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
    /// The turn of a miss for `key`.
    pub fn turn(self: &Arc<Self>, key: &BaseKey) -> Turn {
        let mut inner = self.lock();
        match inner.flights.get(key) {
            Some(Flight::Pending(done)) => return Turn::Wait(Waiting(done.clone())),
            Some(Flight::Pass(until)) if *until > Instant::now() => return Turn::Pass,
            Some(Flight::Pass(_)) => {
                inner.passing -= weight(key);
                inner.flights.remove(key);
            }
            None => {}
        }
        let (sender, receiver) = watch::channel(());
        inner.flights.insert(key.clone(), Flight::Pending(receiver));
        Turn::Lead(Leader {
            flights: self.clone(),
            key: Some(key.clone()),
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

fn weight(key: &BaseKey) -> usize {
    key.target.len() + key.host.len() + key.origin.len() + 64
}

/// The request at the app for a URL others wait on. Dropped when its answer
/// is stored or will not be: the waiters wake (its sender goes last).
pub struct Leader {
    flights: Arc<Flights>,
    key: Option<BaseKey>,
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
        let Some(key) = self.key.take() else {
            return;
        };
        let mut inner = self.flights.lock();
        if self.storable {
            inner.flights.remove(&key);
            return;
        }
        let size = weight(&key);
        if inner.passing + size > PASS_BUDGET {
            // Make room from the expired ones.
            let now = Instant::now();
            let mut freed = 0;
            inner.flights.retain(|key, flight| match flight {
                Flight::Pass(until) if *until <= now => {
                    freed += weight(key);
                    false
                }
                _ => true,
            });
            inner.passing -= freed;
        }
        if inner.passing + size > PASS_BUDGET {
            inner.flights.remove(&key);
            return;
        }
        inner.passing += size;
        inner
            .flights
            .insert(key, Flight::Pass(Instant::now() + PASS_FOR));
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

    fn key(target: &str) -> BaseKey {
        BaseKey {
            target: target.into(),
            host: "t".into(),
            origin: String::new(),
        }
    }

    #[tokio::test]
    async fn misses_wait_for_the_leader_and_then_lead_again() {
        let flights = Arc::new(Flights::default());
        let Turn::Lead(leader) = flights.turn(&key("/a.js")) else {
            panic!("the first miss leads");
        };
        let Turn::Wait(waiting) = flights.turn(&key("/a.js")) else {
            panic!("the second waits");
        };
        assert!(matches!(flights.turn(&key("/b.js")), Turn::Lead(_)));
        drop(leader);
        waiting.done().await;
        // Done: the next miss (the entry expired, say) leads again.
        assert!(matches!(flights.turn(&key("/a.js")), Turn::Lead(_)));
    }

    #[tokio::test]
    async fn a_url_not_storable_goes_straight_to_the_app() {
        let flights = Arc::new(Flights::default());
        let Turn::Lead(leader) = flights.turn(&key("/page")) else {
            panic!("the first miss leads");
        };
        let Turn::Wait(waiting) = flights.turn(&key("/page")) else {
            panic!("the second waits");
        };
        leader.not_storable();
        waiting.done().await;
        assert!(matches!(flights.turn(&key("/page")), Turn::Pass));
    }

    #[test]
    fn remembered_passes_stay_within_their_budget() {
        let flights = Arc::new(Flights::default());
        let long = "x".repeat(100_000);
        for i in 0..100 {
            if let Turn::Lead(leader) = flights.turn(&key(&format!("/{i}{long}"))) {
                leader.not_storable();
            }
        }
        assert!(flights.lock().passing <= PASS_BUDGET);
        assert!(flights.lock().flights.len() <= PASS_BUDGET / 100_000);
    }
}
