//! The response cache in the request path: lookups, hits (with their
//! compressed variants, ranges, HEAD and 304s) and storing a response while
//! it streams to the first client.

pub mod policy;
pub mod store;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use pin_project_lite::pin_project;

use super::compression::codec::{compress_all, Jitter};
use super::compression::{self, CompressionRequest};
use super::forwarding;
use crate::body::{self, Body, BoxError};
use crate::config::Config;
use crate::protocol::conditional;
use crate::protocol::headers::{set, text, vary_on_accept_encoding};
use crate::protocol::range::{self, RangeRequest};
use policy::{storable, vary_names};
use store::{BaseKey, Entry, ResponseCache};

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// A request the cache may answer: GET or HEAD, no upgrade.
pub struct CacheRequest {
    base: BaseKey,
    method: Method,
    range: bool,
    /// The request's headers, kept only for a miss (see `with_headers`).
    headers: HeaderMap,
}

impl CacheRequest {
    /// None when the request must bypass the cache.
    pub fn of<B>(req: &Request<B>) -> Option<Self> {
        if !(req.method() == Method::GET || req.method() == Method::HEAD)
            || forwarding::wants_upgrade(req.headers())
        {
            return None;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Some(CacheRequest {
            base: BaseKey { target, host },
            method: req.method().clone(),
            range: req.headers().contains_key(header::RANGE),
            headers: HeaderMap::new(),
        })
    }

    /// Keeps the request's headers, which a miss needs to store its response.
    pub fn with_headers(self, headers: HeaderMap) -> Self {
        CacheRequest { headers, ..self }
    }

    /// A Range request is answered from a stored entry but never stored.
    pub fn is_range(&self) -> bool {
        self.range
    }
}

pub fn mark(response: &mut Response<Body>, outcome: &'static str) {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(outcome));
}

/// Answers from a stored entry.
pub fn respond(
    config: &Config,
    request: &CacheRequest,
    request_headers: &HeaderMap,
    compression: &CompressionRequest,
    entry: &Entry,
) -> Response<Body> {
    let request_header = |name: HeaderName| text(request_headers, name);
    let mut headers = entry.headers.clone();
    headers.insert(X_CACHE, HeaderValue::from_static("hit"));
    headers.insert(
        header::AGE,
        HeaderValue::from(entry.stored_at.elapsed().as_secs()),
    );
    let reply = |status: StatusCode, headers: HeaderMap, body: Bytes| {
        let mut response = Response::new(if request.method == Method::HEAD {
            body::empty()
        } else {
            body::full(body)
        });
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    };

    let etag = text(&headers, header::ETAG).map(str::to_string);
    if let Some(if_none_match) = request_header(header::IF_NONE_MATCH) {
        if conditional::none_match(if_none_match, etag.as_deref()) {
            headers.remove(header::CONTENT_LENGTH);
            return reply(StatusCode::NOT_MODIFIED, headers, Bytes::new());
        }
    }

    if entry.status == StatusCode::OK {
        let size = entry.body.len() as u64;
        let range_applies = request_header(header::IF_RANGE)
            .is_none_or(|if_range| conditional::range_still_valid(if_range, etag.as_deref(), None));
        if range_applies {
            match range::parse(request_header(header::RANGE), size) {
                RangeRequest::Whole => {}
                RangeRequest::Part { start, end } => {
                    let part = entry.body.slice(start as usize..=end as usize);
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
                    set(
                        &mut headers,
                        header::CONTENT_RANGE,
                        format!("bytes {start}-{end}/{size}"),
                    );
                    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                    return reply(StatusCode::PARTIAL_CONTENT, headers, part);
                }
                RangeRequest::Unsatisfiable => {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                    set(
                        &mut headers,
                        header::CONTENT_RANGE,
                        format!("bytes */{size}"),
                    );
                    return reply(StatusCode::RANGE_NOT_SATISFIABLE, headers, Bytes::new());
                }
            }
        }
    }

    let variant =
        compression::choose(config, compression, entry.status, &headers).and_then(|encoding| {
            entry
                .variant(encoding)
                .map(|bytes| (encoding, bytes.clone()))
        });
    let body = match variant {
        Some((encoding, bytes)) => {
            compression::mark_encoded(&mut headers, encoding);
            vary_on_accept_encoding(&mut headers);
            bytes
        }
        None => entry.body.clone(),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    reply(entry.status, headers, body)
}

/// The cache as the pipeline uses it: the store and what it takes to fill it.
#[derive(Clone)]
pub struct Store {
    cache: Arc<ResponseCache>,
    /// One permit per response being stored at a time.
    storing: Arc<tokio::sync::Semaphore>,
    jitter: Arc<Jitter>,
    config: Arc<Config>,
}

impl Store {
    pub fn new(config: Arc<Config>, jitter: Arc<Jitter>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Store {
            cache: Arc::new(ResponseCache::new(config.cache_size)),
            storing: Arc::new(tokio::sync::Semaphore::new(cpus)),
            jitter,
            config,
        }
    }

    pub fn lookup(&self, request: &CacheRequest, headers: &HeaderMap) -> Option<Arc<Entry>> {
        self.cache.get(&request.base, headers)
    }
}

/// Passes a miss to the client and, when storable, keeps a copy of its body
/// (abandoned past MAX_CACHE_ITEM_SIZE) to store once it is complete.
pub fn capture(store: Store, request: CacheRequest, response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(X_CACHE, HeaderValue::from_static("miss"));
    let max_item = store.config.max_cache_item_size;
    let plan = (request.method == Method::GET && !request.is_range())
        .then(|| storable(parts.status, &parts.headers, max_item))
        .flatten()
        .zip(vary_names(&parts.headers));
    let Some((lifetime, vary)) = plan else {
        return Response::from_parts(parts, body);
    };
    let mut headers = parts.headers.clone();
    headers.remove(header::SET_COOKIE);
    let status = parts.status;
    let on_complete = move |bytes: Bytes| {
        // Compressing the variants is CPU work: it runs off the I/O threads,
        // a bounded number at a time. When all slots are busy (a flood of
        // new URLs) the response is simply not stored, so no queue grows.
        let Ok(permit) = store.storing.clone().try_acquire_owned() else {
            tracing::debug!(target = %request.base.target, "Cache busy storing, response not stored");
            return;
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let variants: Vec<_> =
                if compression::worth_compressing(&store.config, status, &headers) {
                    let padding = store.jitter.padding(&bytes[..]);
                    store
                        .config
                        .encodings
                        .iter()
                        .filter_map(|&encoding| {
                            compress_all(encoding, &bytes, padding)
                                .ok()
                                .map(|b| (encoding, b))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
            tracing::debug!(target = %request.base.target, variants = variants.len(), "Stored response with its compressed variants");
            store
                .cache
                .insert(request.base, vary, &request.headers, |base, values| {
                    let mut entry = Entry::new(base, values, status, headers, bytes, lifetime);
                    entry.variants = variants;
                    entry
                });
        });
    };
    let body = Capture {
        inner: body,
        buffer: Some(BytesMut::new()),
        limit: max_item,
        on_complete: Some(on_complete),
    };
    Response::from_parts(parts, body::boxed(body))
}

pin_project! {
    /// A body passed through unchanged while a bounded copy is kept.
    struct Capture<F> {
        #[pin]
        inner: Body,
        buffer: Option<BytesMut>,
        limit: u64,
        on_complete: Option<F>,
    }
}

impl<F: FnOnce(Bytes)> HttpBody for Capture<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(buffer)) = (frame.data_ref(), this.buffer.as_mut()) {
                    if (buffer.len() + data.len()) as u64 > *this.limit {
                        *this.buffer = None;
                    } else {
                        buffer.extend_from_slice(data);
                    }
                }
                // A body with a known length is not polled past its last
                // byte, so completion is noticed here rather than at the end.
                if this.inner.is_end_stream() {
                    complete(this.buffer, this.on_complete);
                }
            }
            Poll::Ready(None) => complete(this.buffer, this.on_complete),
            Poll::Ready(Some(Err(_))) => *this.buffer = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Hands the captured body over, once.
fn complete<F: FnOnce(Bytes)>(buffer: &mut Option<BytesMut>, on_complete: &mut Option<F>) {
    if let (Some(buffer), Some(done)) = (buffer.take(), on_complete.take()) {
        done(buffer.freeze());
    }
}
