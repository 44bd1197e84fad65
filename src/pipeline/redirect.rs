//! The HTTP port when TLS is on: a permanent redirect to HTTPS for the hosts
//! the certificates cover, 421 for any other host (so a stray Host header
//! cannot make thrust send clients elsewhere).

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::proxy;
use crate::http::body::{self, Body};
use crate::tls::Certificates;

/// The host name of a request, without port, lower-cased.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().host().map(str::to_string))?;
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or_default().to_string()
    } else {
        raw.rsplit_once(':')
            .map_or(raw.as_str(), |(host, _)| host)
            .to_string()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

pub async fn answer<B>(certificates: &Certificates, req: &Request<B>) -> Response<Body> {
    let host = match request_host(req) {
        Some(host) if certificates.covers(&host).await => Some(host),
        _ => None,
    };
    let Some(host) = host else {
        return proxy::plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this host is not served here\n",
            false,
        );
    };
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    // No port: behind `-p 443:8443` the public HTTPS port is 443.
    let Ok(location) = HeaderValue::from_str(&format!("https://{host}{target}")) else {
        return proxy::plain(StatusCode::BAD_REQUEST, "bad request target\n", true);
    };
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

/// ACME HTTP-01 challenges must reach their responder over plain HTTP.
pub fn is_acme_challenge<B>(req: &Request<B>) -> bool {
    req.uri().path().starts_with("/.well-known/acme-challenge/")
}

/// The key authorization for a pending HTTP-01 challenge, answered by thrust.
pub async fn acme_http_challenge<B>(
    certificates: &Certificates,
    req: &Request<B>,
) -> Option<Response<Body>> {
    let token = req
        .uri()
        .path()
        .strip_prefix("/.well-known/acme-challenge/")?;
    let answer = certificates.http_challenge(token).await?;
    let mut response = Response::new(body::full(answer));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(host: &str) -> Option<String> {
        request_host(&Request::get("/").header("host", host).body(()).unwrap())
    }

    #[test]
    fn hosts_lose_their_port_and_case() {
        assert_eq!(host_of("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(host_of("example.com").as_deref(), Some("example.com"));
        assert_eq!(host_of("[::1]:443").as_deref(), Some("::1"));
        assert_eq!(host_of(":80"), None);
        assert_eq!(host_of(""), None);
    }
}
