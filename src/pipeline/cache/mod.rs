//! The response cache in the request path: lookups, hits (with their
//! compressed variants, ranges, HEAD and 304s) and storing a response while
//! it streams to the first client.

mod capture;
pub mod flights;
pub mod policy;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{response, Method, Request, Response, StatusCode};

use super::compression::codec::{compress_all, Jitter};
use super::compression::dictionary::{
    Dictionaries, Offer, AVAILABLE_DICTIONARY, USE_AS_DICTIONARY,
};
use super::compression::{self, CompressionRequest};
use super::forwarding::{Rewrite, ORIGIN_HEADERS, ORIGIN_HEADER_COUNT};
use super::preconditions::{Conditions, Outcome};
use super::representation::{self, Content};
use super::sendfile::FileSource;
use crate::config::Config;
use crate::conn::cache_share::CacheShare;
use crate::http::body::{self, Body};
use crate::http::headers::{vary_on_accept_encoding, weaken_etag};
use capture::{capture, CaptureBudget};
use flights::{Flights, Leader, Turn};
use policy::{storable, vary_names};
use store::{BaseKey, Entry, ResponseCache};

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// How long a returning visitor's first request for a new version waits for
/// a storing slot to learn it (`Store::learn_file`).
const LEARN_WAIT: Duration = Duration::from_millis(500);

/// A request the cache may answer: GET or HEAD, no upgrade.
pub struct CacheRequest {
    base: BaseKey,
    /// `base`'s keyed hash, once looked up (`Store::lookup`).
    hash: u64,
    method: Method,
    range: bool,
    /// The client's request headers, kept only for a miss (see
    /// `keep_headers`), and how they were rewritten for the app: the entry's
    /// Vary values are those the app saw.
    headers: HeaderMap,
    rewrite: Option<Rewrite>,
    /// Set when this miss leads the others for its URL (`flights`).
    leader: Option<Leader>,
}

impl CacheRequest {
    /// None when the request must bypass the cache (`upgrade`: it goes on
    /// as a protocol switch, `Rewrite::upgrade`). `conditions` are the
    /// request's (they know whether it asks for a range).
    pub fn of<B>(req: &Request<B>, conditions: &Conditions, upgrade: bool) -> Option<Self> {
        if !may_use_cache(req, upgrade) {
            return None;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| {
                let mut host = String::with_capacity(h.len());
                push_lossy(&mut host, h.as_bytes());
                host
            })
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let base = BaseKey {
            target,
            host,
            origin: origin(req.headers()),
            public: false,
        };
        Some(CacheRequest::keyed(req, base, conditions))
    }

    /// For a file below THRUST_PUBLIC_DIR, keyed on its path `key` alone:
    /// None when the request must bypass the cache.
    pub fn for_public_file<B>(
        req: &Request<B>,
        key: &str,
        conditions: &Conditions,
        upgrade: bool,
    ) -> Option<Self> {
        let base = BaseKey {
            target: key.to_string(),
            host: String::new(),
            origin: String::new(),
            public: true,
        };
        may_use_cache(req, upgrade).then(|| CacheRequest::keyed(req, base, conditions))
    }

    fn keyed<B>(req: &Request<B>, base: BaseKey, conditions: &Conditions) -> Self {
        CacheRequest {
            base,
            method: req.method().clone(),
            range: conditions.asks_for_range(),
            hash: 0,
            headers: HeaderMap::new(),
            rewrite: None,
            leader: None,
        }
    }

    /// Keeps the client's request headers and how they were rewritten,
    /// which a miss needs to store its response.
    pub fn keep_headers(&mut self, headers: HeaderMap, rewrite: Rewrite) {
        self.headers = headers;
        self.rewrite = Some(rewrite);
    }

    /// A Range request is answered from a stored entry but never stored.
    pub fn is_range(&self) -> bool {
        self.range
    }

    /// This miss goes to the app for the others waiting on its URL.
    pub fn lead(&mut self, leader: Leader) {
        self.leader = Some(leader);
    }

    /// The answer will not be stored: no wait for it next time.
    fn not_storable(&mut self) {
        if let Some(leader) = self.leader.take() {
            leader.not_storable();
        }
    }
}

/// GET or HEAD, no upgrade.
fn may_use_cache<B>(req: &Request<B>, upgrade: bool) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD) && !upgrade
}

/// The origin headers of a request as the app receives them (X-Forwarded-
/// Host, -Proto, Forwarded...), in one string: part of the key, so an
/// answer built for one client's values is never served for another's.
fn origin(headers: &HeaderMap) -> String {
    // Room for a host name and a scheme: one allocation in the usual case.
    let mut key = String::with_capacity(64);
    // Their values in one pass over the head (a hashed lookup for each name
    // cost more than the rest of the key): each name's first value in
    // place, the rare further ones aside, written in the order of
    // ORIGIN_HEADERS and, for one name, as received.
    let mut first: [Option<&HeaderValue>; ORIGIN_HEADER_COUNT] = [None; ORIGIN_HEADER_COUNT];
    let mut more: Vec<(usize, &HeaderValue)> = Vec::new();
    for (name, value) in headers {
        let Some(index) = ORIGIN_HEADERS.iter().position(|origin| origin == name) else {
            continue;
        };
        match &mut first[index] {
            slot @ None => *slot = Some(value),
            Some(_) => more.push((index, value)),
        }
    }
    let mut push = |index: usize, value: &HeaderValue| {
        key.push(char::from(b'0' + index as u8));
        push_lossy(&mut key, value.as_bytes());
        key.push('\n');
    };
    for (index, value) in first.iter().enumerate() {
        let Some(value) = value else {
            continue;
        };
        push(index, value);
        for (_, value) in more.iter().filter(|(of, _)| *of == index) {
            push(index, value);
        }
    }
    key
}

/// Appends header bytes as text: as they are when UTF-8 (checked a word at
/// a time), lossily otherwise.
fn push_lossy(text: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(valid) => text.push_str(valid),
        Err(_) => text.push_str(&String::from_utf8_lossy(bytes)),
    }
}

pub fn mark(response: &mut Response<Body>, outcome: &'static str) {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(outcome));
}

/// Answers from a stored entry: preconditions and Range on the stored
/// bytes, and a whole answer in the stored compressed form the client
/// prefers — or, for a fingerprinted asset with THRUST_COMPRESSION_DICTIONARIES,
/// a delta from the version the client holds.
pub fn respond(
    config: &Config,
    conditions: &Conditions,
    compression: &CompressionRequest,
    entry: &Entry,
    dictionary: Option<(&Dictionaries, &Offer)>,
) -> Response<Body> {
    let mut headers = entry.headers.clone();
    headers.insert(
        header::AGE,
        HeaderValue::from(entry.stored_at.elapsed().as_secs()),
    );
    let decided = conditions.evaluate(entry.status, &headers, entry.body.len() as u64);
    let mut body = entry.body.clone();
    let dictionary = dictionary.filter(|_| entry.status == StatusCode::OK);
    let delta = dictionary
        .filter(|_| decided == Outcome::Whole)
        .and_then(|(dictionaries, offer)| dictionaries.delta(offer, entry.identity));
    if let Some((_, offer)) = dictionary {
        // This version is the next one's dictionary; answers differ by the
        // dictionary the client holds.
        headers.insert(USE_AS_DICTIONARY, offer.family.header());
        vary_on_accept_encoding(&mut headers);
        headers.append(header::VARY, HeaderValue::from(AVAILABLE_DICTIONARY));
    }
    let variant = matches!(decided, Outcome::Whole | Outcome::NotModified)
        .then(|| compression::choose(config, compression, entry.status, &headers))
        .flatten()
        .and_then(|encoding| entry.variant(encoding).map(|bytes| (encoding, bytes)));
    if let Some(delta) = delta {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("dcz"));
        weaken_etag(&mut headers);
        body = delta;
    } else if let Some((encoding, bytes)) = variant {
        vary_on_accept_encoding(&mut headers);
        if decided == Outcome::Whole {
            compression::mark_encoded(&mut headers, encoding);
            body = bytes.clone();
        } else {
            // A 304 carries the validator the 200 would have carried.
            weaken_etag(&mut headers);
        }
    }
    let mut parts = Response::new(()).into_parts().0;
    parts.status = entry.status;
    parts.headers = headers;
    let size = body.len() as u64;
    representation::respond(
        decided,
        conditions.method(),
        parts,
        Content::Memory(body),
        size,
    )
}

/// The cache as the pipeline uses it: the store and what it takes to fill it.
#[derive(Clone)]
pub struct Store {
    cache: Arc<ResponseCache>,
    /// One permit per response being stored at a time.
    storing: Arc<tokio::sync::Semaphore>,
    /// What the copies of misses being captured may hold together.
    capturing: CaptureBudget,
    jitter: Arc<Jitter>,
    config: Arc<Config>,
    /// With THRUST_COMPRESSION_DICTIONARIES.
    dictionaries: Option<Dictionaries>,
    /// Misses at the app, that others for the same URL wait on.
    flights: Arc<Flights>,
    /// Told what the cache holds after each store: heads being read borrow
    /// what it leaves of its share.
    share: Arc<CacheShare>,
}

impl Store {
    pub fn new(config: Arc<Config>, jitter: Arc<Jitter>, share: Arc<CacheShare>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Store {
            cache: Arc::new(ResponseCache::new(config.cache_size)),
            storing: Arc::new(tokio::sync::Semaphore::new(cpus)),
            capturing: CaptureBudget::new(crate::config::memory_budget::capture_budget(
                config.cache_size,
            )),
            // Compression off means no Content-Encoding at all, dcz included.
            dictionaries: (config.dictionaries && config.compression).then(|| {
                Dictionaries::new(crate::config::memory_budget::dictionary_budget(
                    config.cache_size,
                ))
            }),
            jitter,
            config,
            flights: Arc::default(),
            share,
        }
    }

    /// Whether a miss for `request` (looked up) goes to the app or waits
    /// for the one already there (`flights`). Only a GET's answer is stored.
    pub fn turn(&self, request: &CacheRequest) -> Turn {
        if request.method != Method::GET || request.is_range() {
            return Turn::Pass;
        }
        self.flights.turn(request.hash)
    }

    /// Dictionary compression's part in answering `request`, when on and
    /// the target is a fingerprinted script or style.
    pub fn dictionary_offer(
        &self,
        request: Option<&CacheRequest>,
        headers: &HeaderMap,
    ) -> Option<(&Dictionaries, Offer)> {
        let dictionaries = self.dictionaries.as_ref()?;
        let base = &request?.base;
        let offer = Offer::of(&base.host, &base.origin, &base.target, headers)?;
        Some((dictionaries, offer))
    }

    /// URLs stored and the bytes they weigh, for /metrics.
    pub fn held(&self) -> (u64, u64) {
        (self.cache.urls(), self.cache.weighed_size())
    }

    /// Bytes the compression dictionaries hold, for /metrics.
    pub fn dictionaries_held(&self) -> u64 {
        self.dictionaries.as_ref().map_or(0, Dictionaries::held)
    }

    /// The stored answer to `request`, if any; the URL's hash is kept in
    /// `request` for what follows a miss (`turn`).
    pub fn lookup(&self, request: &mut CacheRequest, headers: &HeaderMap) -> Option<Arc<Entry>> {
        request.hash = self.cache.hash(&request.base);
        self.cache.get(&request.base, request.hash, headers)
    }

    /// How a miss's response is to be stored, if it may be.
    fn plan(&self, mut request: CacheRequest, parts: &response::Parts) -> Option<Plan> {
        let lifetime = (request.method == Method::GET && !request.is_range())
            .then(|| {
                storable(
                    parts.status,
                    &parts.headers,
                    self.config.max_cache_item_size,
                )
            })
            .flatten();
        // Vary read only for a head that may be stored.
        let planned = lifetime.and_then(|lifetime| Some((lifetime, vary_names(&parts.headers)?)));
        let Some((lifetime, vary)) = planned else {
            // Said at debug level, so a test can know the decision.
            tracing::debug!(target = %request.base.target, "Response not stored: its request or head does not allow it, or it is larger than MAX_CACHE_ITEM_SIZE");
            // An app that failed may answer the next one; any other
            // answer says the same next time.
            if !parts.status.is_server_error() {
                request.not_storable();
            }
            return None;
        };
        // The request as the app received it, for the entry's Vary values.
        if let Some(rewrite) = request.rewrite.take() {
            rewrite.apply(&mut request.headers);
        }
        let mut headers = parts.headers.clone();
        headers.remove(header::SET_COOKIE);
        Some(Plan {
            request,
            lifetime,
            vary,
            status: parts.status,
            headers,
            file: None,
        })
    }

    /// Stores `body` as the planned response's, with what is made from it
    /// at store time: its compressed variants and, for a fingerprinted
    /// script or stylesheet with dictionaries on, what the dictionaries
    /// learn (it and the versions beside it, and the deltas between them).
    /// That is CPU work: it runs off the I/O threads, a bounded number at a
    /// time. When all slots are busy (a flood of new URLs) the response is
    /// simply not stored, so no queue grows.
    fn store_with_variants(&self, plan: Plan, body: Bytes) {
        let Ok(permit) = self.storing.clone().try_acquire_owned() else {
            tracing::debug!(target = %plan.request.base.target, "Cache busy storing, response not stored");
            return;
        };
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let Plan {
                request,
                lifetime,
                vary,
                status,
                mut headers,
                file,
            } = plan;
            let learning = store
                .dictionary_offer(Some(&request), &request.headers)
                .filter(|_| status == StatusCode::OK);
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            if status == StatusCode::OK {
                // Ranges of it are answered from memory.
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            }
            let variants: Vec<_> =
                if compression::worth_compressing(&store.config, status, &headers) {
                    let padding = store.jitter.padding(&body[..]);
                    store
                        .config
                        .encodings
                        .iter()
                        .filter_map(|&encoding| {
                            compress_all(encoding, &body, padding)
                                .ok()
                                .map(|b| (encoding, b))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
            let count = variants.len();
            // Before the entry can be found, so that its first hits
            // already find the deltas from earlier versions.
            let identity = learning.and_then(|(dictionaries, offer)| {
                let encoding = headers.get(header::CONTENT_ENCODING);
                dictionaries.learn(&offer, &body, encoding, file.as_deref())
            });
            let mut entry = Entry::new(status, headers, body, lifetime);
            entry.variants = variants;
            entry.identity = identity;
            let target = request.base.target.clone();
            store
                .cache
                .insert(request.base, vary, &request.headers, entry);
            store.share.cache_holds(store.cache.weighed_size());
            // Logged once the entry can be found.
            tracing::debug!(target = %target, variants = count, "Stored response with its compressed variants");
        });
    }

    /// For a file just stored (`entry`, read from `path`) that a client
    /// holding a dictionary asks for (its first request since it was
    /// deployed): learns it and the versions beside it now, on the blocking
    /// pool within the storing slots, so this very answer can be a delta.
    /// A slot is waited for up to `LEARN_WAIT` (the file's own store may
    /// hold one); none by then: nothing is learned and the answer is
    /// compressed as usual.
    pub async fn learn_file(
        &self,
        dictionaries: &Dictionaries,
        offer: &Offer,
        entry: &mut Entry,
        path: &Path,
    ) {
        let slot = tokio::time::timeout(LEARN_WAIT, self.storing.clone().acquire_owned());
        let Ok(Ok(permit)) = slot.await else {
            return;
        };
        let (dictionaries, offer, path) = (dictionaries.clone(), offer.clone(), path.to_path_buf());
        let body = entry.body.clone();
        let encoding = entry.headers.get(header::CONTENT_ENCODING).cloned();
        let learned = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            dictionaries.learn(&offer, &body, encoding.as_ref(), Some(&path))
        });
        entry.identity = learned.await.ok().flatten();
    }

    /// For a miss the app answered with a file: when the response may be
    /// stored and the file fits MAX_CACHE_ITEM_SIZE, reads the file, stores
    /// its bytes and returns them as an entry to answer this request from.
    /// None: the file is sent from disk, as it is for requests the cache
    /// does not take.
    pub fn store_file(
        &self,
        request: CacheRequest,
        parts: &response::Parts,
        source: &mut FileSource,
    ) -> Option<Entry> {
        let mut plan = self.plan(request, parts)?;
        let file = source.open()?;
        let limit = self.config.max_cache_item_size;
        if file.size() > limit {
            plan.request.not_storable();
            return None;
        }
        file.describe(source.path(), &mut plan.headers);
        plan.file = Some(source.path().to_path_buf());
        // Describing may add `Vary: Accept-Encoding` (a file the app encoded
        // itself): the entry is keyed on what it finally varies on.
        plan.vary = vary_names(&plan.headers)?;
        let body = file.read_all(limit)?;
        let answer = Entry::new(
            plan.status,
            plan.headers.clone(),
            body.clone(),
            plan.lifetime,
        );
        self.store_with_variants(plan, body);
        Some(answer)
    }

    /// Passes a miss to the client and, when storable, keeps a copy of its
    /// body (abandoned past MAX_CACHE_ITEM_SIZE) to store once it is complete.
    pub fn capture(&self, request: CacheRequest, response: Response<Body>) -> Response<Body> {
        let (parts, body) = response.into_parts();
        let Some(plan) = self.plan(request, &parts) else {
            return Response::from_parts(parts, body);
        };
        let store = self.clone();
        let body = capture(
            body,
            self.config.max_cache_item_size,
            self.capturing.clone(),
            move |copied| match copied {
                Some(bytes) => store.store_with_variants(plan, bytes),
                // Said at debug level, so a test can know the decision.
                None => {
                    let mut plan = plan;
                    tracing::debug!(target = %plan.request.base.target, "Response not stored: larger than MAX_CACHE_ITEM_SIZE or the capture budget, or cut short");
                    plan.request.not_storable();
                }
            },
        );
        Response::from_parts(parts, body::boxed(body))
    }
}

/// What storing a response takes, decided from its head.
struct Plan {
    request: CacheRequest,
    lifetime: Duration,
    vary: Vec<HeaderName>,
    status: StatusCode,
    headers: HeaderMap,
    /// The file the body was read from, if it was.
    file: Option<std::path::PathBuf>,
}
