//! The /metrics listener on THRUST_METRICS_PORT: its own port, never the
//! public ones, served on the main thread (a scrape every few seconds).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Metrics;
use crate::conn::accept;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A scraper that stalls is cut off after this long.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);
/// Scrape connections open at once; more are closed as they arrive, so
/// whoever reaches the port cannot make thrust hold memory for them.
const MAX_SCRAPERS: usize = 32;

/// Answers scrapes for as long as thrust runs.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let scrapers = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPERS));
    loop {
        let (stream, _) = accept::retrying("metrics", || listener.accept()).await;
        let Ok(permit) = scrapers.clone().try_acquire_owned() else {
            tracing::debug!("Metrics: too many scrape connections open, closing a new one");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&metrics, &req)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, connection).await;
        });
    }
}

fn answer(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, metrics.encode(), CONTENT_TYPE)
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "GET or HEAD\n".to_string(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "metrics are at /metrics\n".to_string(),
            "text/plain",
        ),
    };
    let length = body.len();
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
