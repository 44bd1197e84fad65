//! The in-memory response store: moka, weighed in bytes and bounded by
//! CACHE_SIZE, each entry living as long as its response allows. Keys are
//! keyed hashes, and the full key is compared on every hit, so a hash
//! collision can never serve another URL's body.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use moka::sync::Cache;
use moka::Expiry;

use crate::config::Encoding;

/// Longest time an entry is kept, whatever max-age says.
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Memory an entry costs beyond its bytes (map slots, header map, Arc).
const ENTRY_OVERHEAD: usize = 512;

/// What identifies a stored response: method, path and query, Host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaseKey {
    pub target: String,
    pub host: String,
}

/// A stored response.
pub struct Entry {
    base: BaseKey,
    vary_values: Vec<Option<HeaderValue>>,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Compressed forms of `body`, made once when the entry is stored.
    pub variants: Vec<(Encoding, Bytes)>,
    pub stored_at: Instant,
    lifetime: Duration,
}

impl Entry {
    pub fn new(
        base: BaseKey,
        vary_values: Vec<Option<HeaderValue>>,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        lifetime: Duration,
    ) -> Self {
        Entry {
            base,
            vary_values,
            status,
            headers: headers
                .iter()
                .map(|(name, value)| (name.clone(), owned(value)))
                .collect(),
            body,
            variants: Vec::new(),
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

    fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        let variants: usize = self.variants.iter().map(|(_, b)| b.len()).sum();
        let total = ENTRY_OVERHEAD
            + self.base.target.len()
            + self.base.host.len()
            + headers
            + self.body.len()
            + variants;
        u32::try_from(total).unwrap_or(u32::MAX)
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

struct Lifetime;

impl Expiry<u64, Arc<Entry>> for Lifetime {
    fn expire_after_create(&self, _: &u64, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.lifetime)
    }
}

pub struct ResponseCache {
    entries: Cache<u64, Arc<Entry>>,
    /// For a URL whose response varies, the request headers it varies on.
    vary: Cache<u64, Arc<Vec<HeaderName>>>,
    hasher: RandomState,
}

impl ResponseCache {
    pub fn new(capacity_bytes: u64) -> Self {
        ResponseCache {
            entries: Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|_, entry: &Arc<Entry>| entry.weight())
                .expire_after(Lifetime)
                .build(),
            vary: Cache::builder()
                .max_capacity(capacity_bytes / 64 + 1024)
                .weigher(|_, names: &Arc<Vec<HeaderName>>| {
                    64 + names.iter().map(|n| n.as_str().len() as u32).sum::<u32>()
                })
                .time_to_live(MAX_LIFETIME)
                .build(),
            hasher: RandomState::new(),
        }
    }

    fn vary_values(names: &[HeaderName], request: &HeaderMap) -> Vec<Option<HeaderValue>> {
        names
            .iter()
            .map(|name| request.get(name).map(owned))
            .collect()
    }

    fn key(&self, base: &BaseKey, values: &[Option<HeaderValue>]) -> u64 {
        self.hasher.hash_one((
            base,
            values
                .iter()
                .map(|v| v.as_ref().map(|v| v.as_bytes()))
                .collect::<Vec<_>>(),
        ))
    }

    /// The stored response for this request, if any.
    pub fn get(&self, base: &BaseKey, request: &HeaderMap) -> Option<Arc<Entry>> {
        let base_hash = self.hasher.hash_one(base);
        // Every stored URL has a record here: without one, nothing is stored.
        let names = self.vary.get(&base_hash)?;
        let values = Self::vary_values(&names, request);
        let entry = self.entries.get(&self.key(base, &values))?;
        (entry.base == *base && entry.vary_values == values).then_some(entry)
    }

    /// Stores a response; `vary` names the request headers it varies on.
    pub fn insert(
        &self,
        base: BaseKey,
        vary: Vec<HeaderName>,
        request: &HeaderMap,
        make: impl FnOnce(BaseKey, Vec<Option<HeaderValue>>) -> Entry,
    ) {
        let values = Self::vary_values(&vary, request);
        let key = self.key(&base, &values);
        self.vary
            .insert(self.hasher.hash_one(&base), Arc::new(vary));
        self.entries.insert(key, Arc::new(make(base, values)));
    }

    /// Bytes held, as weighed (after pending maintenance).
    #[cfg(test)]
    pub fn weighed_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(target: &str) -> BaseKey {
        BaseKey {
            target: target.into(),
            host: "example.com".into(),
        }
    }

    fn store(
        cache: &ResponseCache,
        target: &str,
        vary: Vec<HeaderName>,
        request: &HeaderMap,
        body: &'static str,
    ) {
        cache.insert(base(target), vary, request, |base, values| {
            Entry::new(
                base,
                values,
                StatusCode::OK,
                HeaderMap::new(),
                Bytes::from_static(body.as_bytes()),
                Duration::from_secs(60),
            )
        });
    }

    #[test]
    fn keys_include_the_target_host_and_varied_headers() {
        let cache = ResponseCache::new(1 << 20);
        let mut fr = HeaderMap::new();
        fr.insert("accept-language", HeaderValue::from_static("fr"));
        let mut en = HeaderMap::new();
        en.insert("accept-language", HeaderValue::from_static("en"));
        store(
            &cache,
            "/a",
            vec![HeaderName::from_static("accept-language")],
            &fr,
            "bonjour",
        );
        assert_eq!(cache.get(&base("/a"), &fr).unwrap().body, "bonjour");
        assert!(cache.get(&base("/a"), &en).is_none());
        assert!(cache.get(&base("/a?x"), &fr).is_none());
        let other_host = BaseKey {
            target: "/a".into(),
            host: "other.example".into(),
        };
        assert!(cache.get(&other_host, &fr).is_none());
    }

    #[test]
    fn size_stays_within_capacity() {
        let cache = ResponseCache::new(64 * 1024);
        for i in 0..1000 {
            let target = format!("/item/{i}");
            cache.insert(
                base(&target),
                Vec::new(),
                &HeaderMap::new(),
                |base, values| {
                    Entry::new(
                        base,
                        values,
                        StatusCode::OK,
                        HeaderMap::new(),
                        Bytes::from(vec![0u8; 1000]),
                        Duration::from_secs(60),
                    )
                },
            );
        }
        assert!(
            cache.weighed_size() <= 64 * 1024,
            "{}",
            cache.weighed_size()
        );
    }
}
