//! Forwarding a request to the app server and its answer back: streaming
//! both ways, upgrades, and the 4xx/5xx answers for what can go wrong.

use std::future::Future;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper_util::rt::TokioIo;

use super::early_hints;
use super::forwarding::{self, Rewrite};
use super::request_body::{request_body, ClientBodyError, UploadClock};
use super::upstream_timeout;
use super::{App, ConnInfo};
use crate::app::upstream::{PooledBody, UpstreamError};
use crate::http::body::client::ClientBody;
use crate::http::body::{self, error_chain, Body};
use crate::http::headers::content_length;
use crate::http::upgrade::ClientUpgrade;

/// How a prepared request travels to the app.
#[derive(Clone)]
pub struct Passage {
    /// The client asked to switch protocols (WebSocket).
    upgrade: bool,
    /// WebSocket over HTTP/2 (RFC 8441): an extended CONNECT, bridged to an
    /// HTTP/1.1 upgrade, which is what app servers speak.
    h2_websocket: bool,
    /// How the head was rewritten, for the cache to redo on its copy.
    pub rewrite: Rewrite,
}

/// Turns the client's request head into what the app receives (see
/// `Rewrite`). Done before the cache is asked, so that what the app sees
/// is what a stored answer is keyed on.
pub fn prepare<B>(app: &App, conn: &ConnInfo, req: &mut Request<B>) -> Passage {
    let h2_websocket = req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    let upgrade = h2_websocket
        || (req.version() == Version::HTTP_11 && forwarding::wants_upgrade(req.headers()));
    let rewrite = Rewrite {
        authority: req
            .uri()
            .authority()
            .filter(|_| !req.headers().contains_key(header::HOST))
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        upgrade,
        addr: conn.remote.ip(),
        https: conn.https,
        trusted: app.config.trusted_proxies.trusts(conn.remote.ip()),
        start_millis: forwarding::unix_millis(),
    };
    rewrite.apply(req.headers_mut());
    Passage {
        upgrade,
        h2_websocket,
        rewrite,
    }
}

pub fn forward<'a>(
    app: &'a App,
    conn: &'a ConnInfo,
    mut req: Request<ClientBody>,
    passage: Passage,
) -> impl Future<Output = Response<Body>> + 'a {
    async move {
        let limit = (app.config.max_request_body > 0).then_some(app.config.max_request_body);
        // The declared length read only with a limit to hold it to.
        let declared = limit.and_then(|_| content_length(req.headers()));
        if let (Some(limit), Some(declared)) = (limit, declared) {
            if declared > limit {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large\n",
                    true,
                );
            }
        }
        if !app.readiness.is_ready() && !app.readiness.wait_ready(app.config.boot_wait).await {
            tracing::warn!(path = %req.uri().path(), "App server not ready, answering 502");
            return bad_gateway(app);
        }

        let Passage {
            upgrade,
            h2_websocket,
            ..
        } = passage;
        let client_upgrade = upgrade.then(|| ClientUpgrade::of(&mut req));
        let hints = if upgrade {
            None
        } else {
            early_hints::route(conn, &mut req)
        };
        let (mut parts, incoming) = req.into_parts();
        let (upstream_body, upload) = upstream_body(app, &mut parts, incoming, h2_websocket, limit);
        // For the log lines below (a shared copy).
        let client_uri = parts.uri.clone();
        let path = client_uri.path();
        parts.version = Version::HTTP_11;
        let mut upstream_req = Request::from_parts(parts, upstream_body);
        let listening = hints.map(|hints| early_hints::listen(hints, &mut upstream_req));

        let head = response_head(app, conn, upstream_req, upload, path).await;
        drop(listening);
        let response = match head {
            Ok(response) => response,
            Err(answer) => return answer,
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                return switch_protocols(conn, response, client_upgrade, h2_websocket);
            }
        }

        let (mut parts, incoming) = response.into_parts();
        forwarding::strip_hop_by_hop(&mut parts.headers, false);
        // The map is as large as the app's headers: room at once for what
        // thrust may add (X-Cache, Vary, Content-Encoding, Alt-Svc), where each
        // growth rehashes it.
        parts.headers.reserve(4);
        Response::from_parts(parts, body::boxed(incoming))
    }
}

/// The body the app is sent: none, or the client's with its limit, deadline
/// and upload clock (returned for THRUST_UPSTREAM_TIMEOUT).
fn upstream_body(
    app: &App,
    parts: &mut http::request::Parts,
    incoming: ClientBody,
    h2_websocket: bool,
    limit: Option<u64>,
) -> (Body, Option<Arc<UploadClock>>) {
    if h2_websocket {
        forwarding::as_websocket_handshake(parts);
        // The stream itself carries the WebSocket bytes once upgraded.
        return (body::empty(), None);
    }
    if incoming.is_end_stream() {
        // No body (most GETs): nothing to limit or time.
        return (body::empty(), None);
    }
    let clock = UploadClock::new();
    let counted = app.metrics.as_ref().map(|m| m.request_body_bytes());
    let body = request_body(incoming, limit, read_timeout(app), clock.clone(), counted);
    (body::boxed(body), Some(clock))
}

/// The app's response head, within THRUST_UPSTREAM_TIMEOUT; Err: the
/// answer to give the client instead (504, or 502 and the like).
async fn response_head(
    app: &App,
    conn: &ConnInfo,
    upstream_req: Request<Body>,
    upload: Option<Arc<UploadClock>>,
    path: &str,
) -> Result<Response<PooledBody>, Response<Body>> {
    let sent = conn.upstream.request(upstream_req);
    let result = match app.config.upstream_timeout {
        Some(limit) => match upstream_timeout::within(limit, sent, upload.as_deref()).await {
            Some(result) => result,
            None => {
                if conn.upstream.saturated() {
                    tracing::warn!(path = %path, timeout_s = limit.as_secs(), "No app connection free within THRUST_UPSTREAM_TIMEOUT: this worker's share of THRUST_MAX_APP_CONNECTIONS is busy, answering 504");
                } else {
                    tracing::warn!(path = %path, timeout_s = limit.as_secs(), "App server sent no response head within THRUST_UPSTREAM_TIMEOUT, answering 504");
                }
                if let Some(metrics) = &app.metrics {
                    metrics.upstream_timeout();
                }
                return Err(plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway timeout\n",
                    false,
                ));
            }
        },
        None => sent.await,
    };
    match result {
        Ok(response) => Ok(response),
        Err(error) => Err(failed(app, path, &error).await),
    }
}

/// The app switched protocols: the two upgraded streams are joined, and the
/// client gets the 101 (or, over HTTP/2, the 200 that opens the stream).
fn switch_protocols(
    conn: &ConnInfo,
    mut response: Response<PooledBody>,
    client_upgrade: ClientUpgrade,
    h2_websocket: bool,
) -> Response<Body> {
    conn.state.set_upgraded();
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let upstream_upgrade = async { Ok::<_, body::BoxError>(upstream_upgrade.await?) };
        match tokio::try_join!(client_upgrade.ready(), upstream_upgrade) {
            Ok((mut client, upstream)) => {
                let _ =
                    tokio::io::copy_bidirectional(&mut client, &mut TokioIo::new(upstream)).await;
            }
            Err(e) => tracing::debug!(error = %e, "Upgrade failed"),
        }
    });
    let (mut parts, _) = response.into_parts();
    if h2_websocket {
        // HTTP/2 accepts the stream with a 200 and no connection headers.
        parts.status = StatusCode::OK;
        for name in [
            header::UPGRADE,
            header::CONNECTION,
            header::SEC_WEBSOCKET_ACCEPT,
        ] {
            parts.headers.remove(name);
        }
    }
    Response::from_parts(parts, body::empty())
}

fn read_timeout(app: &App) -> Option<std::time::Duration> {
    (!app.config.read_timeout.is_zero()).then_some(app.config.read_timeout)
}

/// The answer when the exchange with the app failed before a response head.
async fn failed(app: &App, path: &str, error: &UpstreamError) -> Response<Body> {
    match ClientBodyError::find(error) {
        Some(ClientBodyError::TooLarge) => plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
            true,
        ),
        Some(ClientBodyError::TimedOut) => plain(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time\n",
            true,
        ),
        Some(ClientBodyError::Malformed(_)) => {
            plain(StatusCode::BAD_REQUEST, "malformed request body\n", true)
        }
        None => {
            tracing::warn!(path = %path, error = %error_chain(error), "App server unreachable or connection broken, answering 502");
            if let (Some(metrics), UpstreamError::Connect(_)) = (&app.metrics, error) {
                metrics.upstream_connect_error();
            }
            bad_gateway(app)
        }
    }
}

/// 502 with the BAD_GATEWAY_PAGE read at start-up, or empty without one.
fn bad_gateway(app: &App) -> Response<Body> {
    if let Some(metrics) = &app.metrics {
        metrics.bad_gateway();
    }
    let length = app.bad_gateway_page.len();
    let has_page = length > 0;
    let mut response = Response::new(body::full(app.bad_gateway_page.clone()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    let headers = response.headers_mut();
    if has_page {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// A short plain-text answer; `close` ends the connection after it (the
/// request's body is in an unknown state).
pub fn plain(status: StatusCode, text: &'static str, close: bool) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
