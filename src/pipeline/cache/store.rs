//! The in-memory response store: moka, weighed in bytes and bounded by
//! CACHE_SIZE, evicting the least recently used URL first.
//!
//! One moka entry per URL (a `Route`) holds the request headers its
//! responses vary on and every stored variant of it, so what finds an entry
//! is evicted together with it: nothing stored is ever unreachable.
//!
//! LRU admits every new response. moka's default, TinyLFU, refuses a new
//! entry whose estimated popularity is not above the one it would evict:
//! after a deploy, the new fingerprinted assets stayed misses while the
//! cache was full of the old ones. With LRU the second request for a new
//! asset is a hit; the price is that a flood of URLs requested once each
//! pushes older entries out.
//!
//! Keys are keyed hashes, and the full key is compared on every hit, so a
//! hash collision can never serve another URL's body.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry;

use crate::config::Encoding;
use crate::pipeline::compression::dictionary::Digest;

/// Longest time an entry is kept, whatever max-age says.
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Memory an entry costs beyond its bytes (map slots, header map, Arc).
const ENTRY_OVERHEAD: usize = 512;
/// Most variants kept for one URL (one per distinct set of Vary values);
/// the oldest goes first.
const MAX_VARIANTS: usize = 16;

/// What identifies a URL: path and query, Host, and the origin a trusted
/// proxy reported (X-Forwarded-Host, -Proto...), as the app received them;
/// for a file below THRUST_PUBLIC_DIR, its path alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaseKey {
    pub target: String,
    pub host: String,
    pub origin: String,
    /// A public file's (host and origin empty): never the same key as an
    /// app's answer for the same path.
    pub public: bool,
}

/// A stored response.
pub struct Entry {
    /// The request header values (in the route's Vary order) it answers.
    vary_values: Vec<Option<HeaderValue>>,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Compressed forms of `body`, made once when the entry is stored.
    pub variants: Vec<(Encoding, Bytes)>,
    /// With compression dictionaries: the SHA-256 of its identity bytes
    /// (`body` decoded), which its deltas are keyed by.
    pub identity: Option<Digest>,
    pub stored_at: Instant,
    lifetime: Duration,
}

impl Entry {
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes, lifetime: Duration) -> Self {
        Entry {
            vary_values: Vec::new(),
            status,
            headers: headers
                .iter()
                .map(|(name, value)| (name.clone(), owned(value)))
                .collect(),
            body,
            variants: Vec::new(),
            identity: None,
            stored_at: Instant::now(),
            lifetime: lifetime.min(MAX_LIFETIME),
        }
    }

    pub fn variant(&self, encoding: Encoding) -> Option<&Bytes> {
        self.variants
            .iter()
            .find(|(e, _)| *e == encoding)
            .map(|(_, b)| b)
    }

    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored_at) < self.lifetime
    }

    fn expires_in(&self, now: Instant) -> Duration {
        (self.stored_at + self.lifetime).saturating_duration_since(now)
    }

    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        let vary: usize = self
            .vary_values
            .iter()
            .map(|v| v.as_ref().map_or(0, HeaderValue::len))
            .sum();
        let variants: usize = self.variants.iter().map(|(_, b)| b.len()).sum();
        ENTRY_OVERHEAD + headers + vary + self.body.len() + variants
    }
}

/// A copy of a header value in its own allocation. Values parsed by hyper
/// share the connection's read buffer; a stored entry holding one would keep
/// that whole buffer alive for as long as the entry lives.
fn owned(value: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
        .unwrap_or_else(|_| value.clone());
    copy.set_sensitive(value.is_sensitive());
    copy
}

/// Everything stored for one URL.
struct Route {
    base: BaseKey,
    /// The request headers its responses vary on.
    vary: Vec<HeaderName>,
    /// Newest first.
    entries: Vec<Arc<Entry>>,
}

impl Route {
    fn weight(&self) -> u32 {
        let names: usize = self.vary.iter().map(|n| n.as_str().len()).sum();
        let entries: usize = self.entries.iter().map(|e| e.weight()).sum();
        let total = self.base.target.len()
            + self.base.host.len()
            + self.base.origin.len()
            + names
            + entries;
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// A route lives as long as its longest-lived entry.
    fn expires_in(&self, now: Instant) -> Duration {
        self.entries
            .iter()
            .map(|e| e.expires_in(now))
            .max()
            .unwrap_or_default()
    }
}

struct Lifetime;

impl Expiry<u64, Arc<Route>> for Lifetime {
    fn expire_after_create(&self, _: &u64, route: &Arc<Route>, now: Instant) -> Option<Duration> {
        Some(route.expires_in(now))
    }

    fn expire_after_update(
        &self,
        _: &u64,
        route: &Arc<Route>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(route.expires_in(now))
    }
}

pub struct ResponseCache {
    routes: Cache<u64, Arc<Route>, HashedAlready>,
    hasher: RandomState,
}

/// moka's hasher for keys that are already keyed hashes (`ResponseCache::hash`):
/// they are as unpredictable as a second SipHash of them would be, which
/// cost 150 instructions a lookup.
#[derive(Clone, Default)]
struct HashedAlready;

impl BuildHasher for HashedAlready {
    type Hasher = TakenAsItIs;

    fn build_hasher(&self) -> TakenAsItIs {
        TakenAsItIs(0)
    }
}

struct TakenAsItIs(u64);

impl Hasher for TakenAsItIs {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    /// Never called for a u64 key; folds bytes in all the same.
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
}

fn vary_values(names: &[HeaderName], request: &HeaderMap) -> Vec<Option<HeaderValue>> {
    names
        .iter()
        .map(|name| request.get(name).map(owned))
        .collect()
}

/// Whether a request's values for `names` are the stored `values`.
fn same_values(names: &[HeaderName], request: &HeaderMap, values: &[Option<HeaderValue>]) -> bool {
    names
        .iter()
        .zip(values)
        .all(|(name, value)| request.get(name) == value.as_ref())
}

impl ResponseCache {
    pub fn new(capacity_bytes: u64) -> Self {
        ResponseCache {
            routes: Cache::builder()
                .max_capacity(capacity_bytes)
                .eviction_policy(EvictionPolicy::lru())
                .weigher(|_, route: &Arc<Route>| route.weight())
                .expire_after(Lifetime)
                .build_with_hasher(HashedAlready),
            hasher: RandomState::new(),
        }
    }

    /// The keyed hash a URL is stored and looked up by.
    pub fn hash(&self, base: &BaseKey) -> u64 {
        self.hasher.hash_one(base)
    }

    /// The stored response for the URL `base` hashed `hash`, if any.
    pub fn get(&self, base: &BaseKey, hash: u64, request: &HeaderMap) -> Option<Arc<Entry>> {
        let route = self.routes.get(&hash)?;
        if route.base != *base {
            return None;
        }
        let now = Instant::now();
        route
            .entries
            .iter()
            .find(|e| e.fresh(now) && same_values(&route.vary, request, &e.vary_values))
            .cloned()
    }

    /// Stores `entry` as the answer to requests for `base` whose headers
    /// named by `vary` have the values they have in `request`.
    pub fn insert(&self, base: BaseKey, vary: Vec<HeaderName>, request: &HeaderMap, entry: Entry) {
        let values = vary_values(&vary, request);
        let entry = Arc::new(Entry {
            vary_values: values,
            ..entry
        });
        let now = Instant::now();
        self.routes
            .entry(self.hasher.hash_one(&base))
            .and_upsert_with(|stored| {
                // Other variants of the same URL stay, if they were stored
                // under the same Vary names and are still fresh.
                let mut entries = vec![entry.clone()];
                if let Some(stored) = stored.map(|s| s.into_value()) {
                    if stored.base == base && stored.vary == vary {
                        entries.extend(
                            stored
                                .entries
                                .iter()
                                .filter(|e| e.fresh(now) && e.vary_values != entry.vary_values)
                                .take(MAX_VARIANTS - 1)
                                .cloned(),
                        );
                    }
                }
                Arc::new(Route {
                    base,
                    vary,
                    entries,
                })
            });
        // moka evicts lazily, on later operations: a burst of stores would
        // hold far more than CACHE_SIZE until then. Evicting now keeps the
        // bound (inserts run off the I/O threads, a few at a time).
        self.routes.run_pending_tasks();
    }

    /// Bytes held, as weighed (after pending maintenance).
    pub fn weighed_size(&self) -> u64 {
        self.routes.run_pending_tasks();
        self.routes.weighted_size()
    }

    /// URLs with a stored response (after pending maintenance).
    pub fn urls(&self) -> u64 {
        self.routes.run_pending_tasks();
        self.routes.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ResponseCache {
        fn get_base(&self, base: &BaseKey, request: &HeaderMap) -> Option<Arc<Entry>> {
            self.get(base, self.hash(base), request)
        }
    }

    fn base(target: &str) -> BaseKey {
        BaseKey {
            target: target.into(),
            host: "example.com".into(),
            origin: String::new(),
            public: false,
        }
    }

    fn entry(body: impl Into<Bytes>) -> Entry {
        Entry::new(
            StatusCode::OK,
            HeaderMap::new(),
            body.into(),
            Duration::from_secs(60),
        )
    }

    fn language(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("accept-language", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn keys_include_the_target_host_and_varied_headers() {
        let cache = ResponseCache::new(1 << 20);
        let vary = vec![HeaderName::from_static("accept-language")];
        let (fr, en) = (language("fr"), language("en"));
        cache.insert(base("/a"), vary.clone(), &fr, entry("bonjour"));
        assert_eq!(cache.get_base(&base("/a"), &fr).unwrap().body, "bonjour");
        assert!(cache.get_base(&base("/a"), &en).is_none());
        assert!(cache.get_base(&base("/a?x"), &fr).is_none());
        let other_host = BaseKey {
            host: "other.example".into(),
            ..base("/a")
        };
        assert!(cache.get_base(&other_host, &fr).is_none());
        let other_origin = BaseKey {
            origin: "0evil.example\n".into(),
            ..base("/a")
        };
        assert!(cache.get_base(&other_origin, &fr).is_none());
        let public_file = BaseKey {
            host: String::new(),
            public: true,
            ..base("/a")
        };
        assert!(cache.get_base(&public_file, &fr).is_none());

        // A second variant joins the first; a new response replaces its own.
        cache.insert(base("/a"), vary.clone(), &en, entry("hello"));
        cache.insert(base("/a"), vary.clone(), &fr, entry("salut"));
        assert_eq!(cache.get_base(&base("/a"), &en).unwrap().body, "hello");
        assert_eq!(cache.get_base(&base("/a"), &fr).unwrap().body, "salut");
        // Responses that vary on something else start the URL over.
        cache.insert(base("/a"), Vec::new(), &fr, entry("plain"));
        assert_eq!(cache.get_base(&base("/a"), &en).unwrap().body, "plain");
    }

    #[test]
    fn variants_of_one_url_are_bounded() {
        let cache = ResponseCache::new(1 << 20);
        let vary = vec![HeaderName::from_static("accept-language")];
        let values: Vec<String> = (0..MAX_VARIANTS + 4).map(|i| format!("l{i}")).collect();
        for value in &values {
            let mut request = HeaderMap::new();
            request.insert("accept-language", HeaderValue::from_str(value).unwrap());
            cache.insert(base("/v"), vary.clone(), &request, entry(value.clone()));
        }
        let found = values
            .iter()
            .filter(|value| {
                let mut request = HeaderMap::new();
                request.insert("accept-language", HeaderValue::from_str(value).unwrap());
                cache.get_base(&base("/v"), &request).is_some()
            })
            .count();
        assert_eq!(found, MAX_VARIANTS);
    }

    #[test]
    fn under_pressure_everything_held_is_reachable() {
        let cache = ResponseCache::new(64 * 1024);
        for i in 0..1000 {
            cache.insert(
                base(&format!("/item/{i:04}")),
                Vec::new(),
                &HeaderMap::new(),
                entry(vec![0u8; 1000]),
            );
        }
        let held = cache.weighed_size();
        assert!(held <= 64 * 1024, "{held}");
        let reachable: Vec<usize> = (0..1000)
            .filter(|i| {
                cache
                    .get_base(&base(&format!("/item/{i:04}")), &HeaderMap::new())
                    .is_some()
            })
            .collect();
        // Every byte held belongs to an entry a request can find, and the
        // newest entries are the ones kept.
        let weight = ENTRY_OVERHEAD as u64 + 1000 + 10 + 11;
        assert_eq!(reachable.len() as u64 * weight, held);
        assert!(reachable.len() >= 40, "{}", reachable.len());
        assert!(reachable.iter().all(|&i| i >= 1000 - reachable.len() - 1));
    }

    #[test]
    fn new_entries_are_admitted_into_a_full_cache() {
        let cache = ResponseCache::new(64 * 1024);
        let old = |i: usize| base(&format!("/old/{i:04}"));
        let new = |i: usize| base(&format!("/new/{i:04}"));
        // A full cache of popular old assets...
        for i in 0..40 {
            cache.insert(
                old(i),
                Vec::new(),
                &HeaderMap::new(),
                entry(vec![0u8; 1000]),
            );
        }
        for _ in 0..20 {
            for i in 0..40 {
                cache.get_base(&old(i), &HeaderMap::new());
            }
        }
        cache.weighed_size();
        // ...then a deploy: each new asset is stored once and asked for again.
        for i in 0..20 {
            cache.insert(
                new(i),
                Vec::new(),
                &HeaderMap::new(),
                entry(vec![1u8; 1000]),
            );
        }
        cache.weighed_size();
        let hits = (0..20)
            .filter(|&i| cache.get_base(&new(i), &HeaderMap::new()).is_some())
            .count();
        assert_eq!(hits, 20);
    }
}
