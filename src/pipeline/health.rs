//! The health path, answered by thrust itself for any Host, before any
//! redirect, and never forwarded: deploy health checks must not depend on the
//! app's force_ssl, host authorization or rate limiting.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::app::deep_check::DeepCheck;
use crate::app::readiness::{Health, Readiness};
use crate::app::upstream::UpstreamClient;
use crate::http::body::{self, Body};

pub fn is_health_request<B>(req: &Request<B>, health_path: Option<&str>) -> bool {
    health_path.is_some_and(|path| req.uri().path() == path)
        && (req.method() == Method::GET || req.method() == Method::HEAD)
}

pub async fn answer(
    readiness: &Readiness,
    deep: Option<&DeepCheck>,
    client: &UpstreamClient,
    method: &Method,
) -> Response<Body> {
    let (status, text) = match readiness.health() {
        Health::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Health::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        Health::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
        Health::Ready => match deep {
            Some(check) if !check.passes(client).await => {
                (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
            }
            _ => (StatusCode::OK, "OK"),
        },
    };
    let mut response = Response::new(if method == Method::HEAD {
        body::empty()
    } else {
        body::full(text)
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status != StatusCode::OK {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
