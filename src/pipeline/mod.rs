//! The request pipeline: head check → health → redirect → the app's answer
//! (a cache hit, or the proxy → the file the app names → storing it →
//! compression), and the log line once the response is sent. Each concern
//! lives in its own file or folder.
//!
//! The pipeline layer owns what thrust does with one request. It may call
//! every layer below it (app's upstream pool and readiness, tls, metrics,
//! log, conn's per-connection state, http, config), never the server: the
//! server calls `handle`.

mod alt_svc;
mod asset_name;
pub mod cache;
pub mod compression;
mod early_hints;
pub mod forwarding;
pub mod health;
mod preconditions;
mod proxy;
mod public_dir;
mod redirect;
mod representation;
mod request_body;
mod request_log;
mod response_end;
pub mod scraped;
pub mod sendfile;
mod upstream_timeout;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode, Version};

use crate::app::deep_check::DeepCheck;
use crate::app::readiness::Readiness;
use crate::app::upstream::UpstreamClient;
use crate::config::Config;
use crate::conn::state::{ConnState, InFlight};
use crate::http::body::client::ClientBody;
use crate::http::body::Body;
use crate::http::head_scan::Head;
use crate::http::headers;
use crate::metrics::{Metrics, OpenClientConnection};
use crate::tls::Certificates;
use cache::flights::Turn;
use cache::CacheRequest;
use compression::codec::Jitter;
use compression::dictionary::{Dictionaries, Offer};
use compression::CompressionRequest;
use preconditions::Conditions;
use request_log::RequestFacts;
use response_end::Ending;
use sendfile::Named;

/// What every request handler shares.
pub struct App {
    pub config: Arc<Config>,
    pub cache: cache::Store,
    pub readiness: Arc<Readiness>,
    pub deep_check: Option<Arc<DeepCheck>>,
    pub jitter: Arc<Jitter>,
    /// Set when TLS is on: which hosts the HTTP port redirects to HTTPS.
    pub certificates: Option<Certificates>,
    /// Set with THRUST_METRICS_PORT.
    pub metrics: Option<Arc<Metrics>>,
    /// BAD_GATEWAY_PAGE, read once at start-up (empty when there is none):
    /// an app that is down must not cost a file read per request.
    pub bad_gateway_page: bytes::Bytes,
}

/// The client connection a request arrived on.
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub https: bool,
    pub state: Arc<ConnState>,
    /// The app connection pool of the worker serving this connection.
    pub upstream: UpstreamClient,
    /// Its place in the open-connections gauge, with metrics on.
    pub counted: Option<OpenClientConnection>,
}

/// What the app answers, with thrust's additions: the cache, files sent for
/// it, compression.
fn serve_app<'a>(
    app: &'a App,
    conn: &'a ConnInfo,
    mut req: Request<ClientBody>,
) -> impl Future<Output = Response<Body>> + 'a {
    async move {
        let conditions = Conditions::of(req.method(), req.headers());
        let compression_request = CompressionRequest::of(&req);
        // A copy for the cache, should the answer be stored, taken while the
        // values are still shared with hyper's buffer (cloning is then cheap);
        // the cache redoes the rewrite on it (`forwarding::Rewrite`).
        let client_headers = (matches!(*req.method(), Method::GET | Method::HEAD)
            && !conditions.asks_for_range())
        .then(|| req.headers().clone());
        let passage = proxy::prepare(app, conn, &mut req);
        let upgrade = passage.rewrite.upgrade;
        // A path below THRUST_PUBLIC_DIR is looked up by that path alone;
        // when no file is there, the request is the app's, and so is its key.
        let public = app.config.public_dir.as_deref().and_then(|root| {
            public_dir::Target::of(&req, &app.config.asset_prefix).map(|target| (root, target))
        });
        let mut cache_request = match &public {
            Some((_, target)) => target
                .key()
                .and_then(|key| CacheRequest::for_public_file(&req, key, &conditions, upgrade)),
            None => CacheRequest::of(&req, &conditions, upgrade),
        };
        let mut hit = cache_request
            .as_mut()
            .and_then(|c| app.cache.lookup(c, req.headers()));
        let mut public_file = None;
        if let (None, Some((root, target))) = (&hit, public) {
            public_file = target.open(root);
            if public_file.is_none() {
                cache_request = CacheRequest::of(&req, &conditions, upgrade);
                hit = cache_request
                    .as_mut()
                    .and_then(|c| app.cache.lookup(c, req.headers()));
            }
        }
        let dictionary = app
            .cache
            .dictionary_offer(cache_request.as_ref(), req.headers());
        let dictionary = dictionary.as_ref().map(|(d, offer)| (*d, offer));
        let answer_hit = |entry: &cache::store::Entry| {
            let mut response = cache::respond(
                &app.config,
                &conditions,
                &compression_request,
                entry,
                dictionary,
            );
            cache::mark(&mut response, "hit");
            compression::apply(&app.config, &app.jitter, &compression_request, response)
        };
        if let Some(entry) = hit {
            return answer_hit(&entry);
        }
        // Only a miss that may be stored needs the request's headers later, for
        // the Vary values of the stored entry: hits never copy them. A range of
        // something not stored goes to the app as it is (a bypass), and is not
        // stored.
        // Matched, not chained through Option's adapters: each of those
        // moved the whole request (a few hundred bytes) once more.
        let mut to_store = match (cache_request, client_headers) {
            (Some(mut request), Some(headers)) if !request.is_range() => {
                request.keep_headers(headers, passage.rewrite.clone());
                Some(request)
            }
            _ => None,
        };
        // The first miss for a URL goes to the app; the others wait for its
        // answer to be stored, then are answered from it (cache::flights).
        if let Some(request) = to_store.as_mut() {
            match app.cache.turn(request) {
                Turn::Lead(leader) => request.lead(leader),
                Turn::Wait(waiting) => {
                    waiting.done().await;
                    if let Some(entry) = app.cache.lookup(request, req.headers()) {
                        return answer_hit(&entry);
                    }
                }
                Turn::Pass => {}
            }
        }
        let outcome = if to_store.is_some() { "miss" } else { "bypass" };
        // A file below THRUST_PUBLIC_DIR is answered as if the app had named it.
        let named = match public_file {
            Some((source, parts)) => Named::File(source, parts),
            None => {
                sendfile::announce(req.headers_mut(), &app.config);
                let response = proxy::forward(app, conn, req, passage).await;
                let named = sendfile::named(&app.config, response);
                if let (Named::File(..), Some(metrics)) = (&named, &app.metrics) {
                    metrics.file_sent();
                }
                named
            }
        };
        let mut response = match named {
            Named::Nothing(response) => match to_store {
                Some(request) => app.cache.capture(request, response),
                None => response,
            },
            Named::File(source, parts) => {
                send_named(
                    app,
                    conn,
                    to_store,
                    source,
                    parts,
                    &Asked {
                        conditions: &conditions,
                        compression: &compression_request,
                        dictionary,
                    },
                )
                .await
            }
        };
        cache::mark(&mut response, outcome);
        compression::apply(&app.config, &app.jitter, &compression_request, response)
    }
}

/// What the client asked about the form of the answer.
struct Asked<'a> {
    conditions: &'a Conditions,
    compression: &'a CompressionRequest,
    dictionary: Option<(&'a Dictionaries, &'a Offer)>,
}

/// A file sent in the app's place (named by the app, or below
/// THRUST_PUBLIC_DIR): stored when it may be and fits, then answered from
/// the entry; otherwise streamed from disk.
async fn send_named(
    app: &App,
    conn: &ConnInfo,
    to_store: Option<CacheRequest>,
    mut source: sendfile::FileSource,
    parts: http::response::Parts,
    asked: &Asked<'_>,
) -> Response<Body> {
    match to_store.and_then(|request| app.cache.store_file(request, &parts, &mut source)) {
        Some(mut entry) => {
            if let Some((dictionaries, offer)) = asked.dictionary {
                if offer.wants_delta() {
                    app.cache
                        .learn_file(dictionaries, offer, &mut entry, source.path())
                        .await;
                }
            }
            cache::respond(
                &app.config,
                asked.conditions,
                asked.compression,
                &entry,
                asked.dictionary,
            )
        }
        None => sendfile::serve(
            &app.config,
            source,
            asked.conditions,
            asked.compression,
            parts,
            conn.state.file_slots(),
        ),
    }
}

/// Answers one request: thrust's own answers first, then the app's; the
/// log line and metrics once the response body has ended.
pub fn handle(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    mut req: Request<ClientBody>,
) -> impl Future<Output = Response<Body>> {
    async move {
        let in_flight = conn.state.begin();
        let alt_svc = (app.config.http3 && conn.https && req.version() != Version::HTTP_3)
            .then(|| alt_svc::value(&req));
        if req.version() == Version::HTTP_2 {
            conn.state.set_multiplexed();
            if let Some(counted) = &conn.counted {
                counted.saw_http2();
            }
        }
        let (mut facts, seen) = RequestFacts::of(&req, |forwarded_for| {
            let proxies = &app.config.trusted_proxies;
            proxies.client(conn.remote, req.headers(), forwarded_for)
        });

        let (mut response, passing_health_check) =
            if let Some((status, text)) = refused(&conn, &req, seen.hosts) {
                (proxy::plain(status, text, true), false)
            } else if health::is_health_request(&req, app.config.health_path.as_deref()) {
                let response = health::answer(
                    &app.readiness,
                    app.deep_check.as_deref(),
                    &conn.upstream,
                    req.method(),
                )
                .await;
                let ok = response.status() == StatusCode::OK;
                (response, ok)
            } else if let Some(answer) = match app.certificates.as_ref() {
                Some(certificates) if redirect::is_acme_challenge(&req) => {
                    redirect::acme_http_challenge(certificates, &req).await
                }
                _ => None,
            } {
                (answer, false)
            } else if let Some(certificates) = app
                .certificates
                .as_ref()
                .filter(|_| !conn.https && !redirect::is_acme_challenge(&req))
            {
                (redirect::answer(certificates, &req).await, false)
            } else {
                // The map is as large as the client's headers: room at once for
                // what thrust adds on the way to the app (X-Request-Id, Host,
                // X-Forwarded-For, -Host, -Proto, X-Request-Start), where it grew
                // and was rehashed up to four times a request.
                req.headers_mut().reserve(6);
                facts.request_id = Some(forwarding::ensure_request_id(
                    req.headers_mut(),
                    seen.request_id,
                ));
                (serve_app(&app, &conn, req).await, false)
            };
        if let Some(offer) = alt_svc {
            response
                .headers_mut()
                .entry(header::ALT_SVC)
                .or_insert(offer);
        }
        reported(&app, response, facts, in_flight, passing_health_check)
    }
}

/// Why a request is refused before anything else looks at it, if it is
/// (`hosts`: how many Host headers it has).
fn refused(
    conn: &ConnInfo,
    req: &Request<ClientBody>,
    hosts: usize,
) -> Option<(StatusCode, &'static str)> {
    match conn.state.take_head() {
        Head::Fine => None,
        Head::AmbiguousFraming => Some((
            StatusCode::BAD_REQUEST,
            "request has both Content-Length and Transfer-Encoding\n",
        )),
        Head::TooLarge => Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head larger than 64 KiB\n",
        )),
    }
    .or_else(|| {
        // RFC 9112 §3.2: two Host headers are a bad request. The app and
        // the cache key could each take a different one.
        (hosts > 1).then_some((StatusCode::BAD_REQUEST, "more than one Host header\n"))
    })
    .or_else(|| {
        // hyper refuses these in HTTP/1 heads and the h2 crate in HTTP/2
        // ones; the h3 crate passes them on.
        (req.version() == Version::HTTP_3 && headers::declared_length(req.headers()).is_err())
            .then_some((StatusCode::BAD_REQUEST, "malformed Content-Length\n"))
    })
    .or_else(|| {
        // RFC 9113 §8.3.1, RFC 9114 §4.3.1: the app and the cache key could
        // each take a different one.
        (multiplexed(req) && !authority_matches_host(req)).then_some((
            StatusCode::BAD_REQUEST,
            "Host differs from the request's :authority\n",
        ))
    })
    .or_else(|| {
        // Extended CONNECT (WebSocket over HTTP/3) is not offered, and a
        // plain CONNECT is nothing a front server forwards.
        (req.version() == Version::HTTP_3 && req.method() == Method::CONNECT).then_some((
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT is not served over HTTP/3\n",
        ))
    })
    .or_else(|| {
        // Malformed in HTTP/3 (RFC 9114 §4.2); the h2 crate refuses these
        // itself, the h3 crate does not.
        (req.version() == Version::HTTP_3 && headers::has_connection_specific(req.headers()))
            .then_some((
                StatusCode::BAD_REQUEST,
                "connection-specific header in an HTTP/3 request\n",
            ))
    })
}

/// Whether `req` came on a multiplexed stream (HTTP/2 or HTTP/3), where
/// the target's authority is a pseudo-header of its own.
fn multiplexed(req: &Request<ClientBody>) -> bool {
    matches!(req.version(), Version::HTTP_2 | Version::HTTP_3)
}

/// Whether a Host header, if there is one, names what :authority names:
/// compared without case and without the scheme's default port.
fn authority_matches_host(req: &Request<ClientBody>) -> bool {
    let (Some(authority), Some(host)) = (req.uri().authority(), req.headers().get(header::HOST))
    else {
        return true;
    };
    let default_port = if req.uri().scheme_str() == Some("http") {
        ":80"
    } else {
        ":443"
    };
    let port = default_port.as_bytes();
    let authority = authority.as_str().as_bytes();
    let authority = authority.strip_suffix(port).unwrap_or(authority);
    let host = host.as_bytes();
    authority.eq_ignore_ascii_case(host.strip_suffix(port).unwrap_or(host))
}

/// What the log line and the metrics read of a response's head, found in
/// one pass over its names (a hashed lookup each cost more).
struct Told {
    content_type: Option<header::HeaderValue>,
    encoding: Option<header::HeaderValue>,
    cache: Option<header::HeaderValue>,
}

impl Told {
    fn of(headers: &header::HeaderMap) -> Self {
        let mut told = Told {
            content_type: None,
            encoding: None,
            cache: None,
        };
        for (name, value) in headers {
            // The first value of each, as `HeaderMap::get` gives.
            let slot = if name == header::CONTENT_TYPE {
                &mut told.content_type
            } else if name == header::CONTENT_ENCODING {
                &mut told.encoding
            } else if name == cache::X_CACHE {
                &mut told.cache
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        told
    }
}

/// `response` with a body that, once it has ended, counts the request in
/// the metrics and writes its log line.
fn reported(
    app: &App,
    response: Response<Body>,
    facts: RequestFacts,
    in_flight: InFlight,
    passing_health_check: bool,
) -> Response<Body> {
    let status = response.status().as_u16();
    let log_requests = app.config.log_requests && !passing_health_check;
    let told = (log_requests || app.metrics.is_some()).then(|| Told::of(response.headers()));
    // What the metrics need from the response, taken only with metrics on;
    // what the line needs, only if a line is written (copied only when
    // both are).
    let metrics = match (&app.metrics, &told) {
        (Some(metrics), Some(told)) => {
            Some((metrics.clone(), (told.cache.clone(), told.encoding.clone())))
        }
        _ => None,
    };
    let response_facts = told
        .filter(|_| log_requests)
        .map(|told| (told.content_type, told.encoding, told.cache));
    let (parts, body) = response.into_parts();
    let body = response_end::observed(body, move |sent, ending| {
        drop(in_flight);
        if let Some((metrics, (cache, encoding))) = &metrics {
            metrics.request_done(
                facts.method(),
                status,
                facts.elapsed(),
                sent,
                cache.as_ref(),
                encoding.as_ref(),
            );
        }
        if let Ending::Failed(error) = &ending {
            tracing::warn!(path = %facts.path(), status, sent, error = %error, "Response cut short: its source failed part-way, the connection is closed");
        }
        // Passing health checks would drown the log; they show at debug level.
        if passing_health_check {
            tracing::debug!(status, path = %facts.path(), "Health check answered");
        } else if let Some((content_type, encoding, cache)) = &response_facts {
            facts.log(
                status,
                content_type.as_ref(),
                sent,
                encoding.as_ref(),
                cache.as_ref(),
            );
        }
    });
    Response::from_parts(parts, crate::http::body::boxed(body))
}
