//! One JSON line per request, with the fields Thruster logs.

use std::net::SocketAddr;
use std::time::Instant;

use http::{header, HeaderMap, Request, Version};

use crate::headers::content_length;

/// What the log line needs from the request, taken before the request is
/// handed on.
pub struct RequestFacts {
    started: Instant,
    method: String,
    path: String,
    query: String,
    proto: &'static str,
    remote_addr: String,
    user_agent: String,
    content_length: u64,
    content_type: String,
    pub request_id: String,
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

impl RequestFacts {
    pub fn of<B>(req: &Request<B>, remote: SocketAddr) -> Self {
        let headers = req.headers();
        RequestFacts {
            started: Instant::now(),
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or_default().to_string(),
            proto: match req.version() {
                Version::HTTP_09 => "HTTP/0.9",
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2.0",
                Version::HTTP_3 => "HTTP/3.0",
                _ => "HTTP/1.1",
            },
            remote_addr: remote.to_string(),
            user_agent: text(headers, header::USER_AGENT),
            content_length: content_length(headers).unwrap_or(0),
            content_type: text(headers, header::CONTENT_TYPE),
            request_id: String::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Writes the line once the response has been sent (or abandoned).
    pub fn log(&self, status: u16, resp_content_type: &str, resp_content_length: u64, cache: &str) {
        tracing::info!(
            path = %self.path,
            status,
            dur = self.started.elapsed().as_millis() as u64,
            method = %self.method,
            req_content_length = self.content_length,
            req_content_type = %self.content_type,
            resp_content_length,
            resp_content_type = %resp_content_type,
            remote_addr = %self.remote_addr,
            user_agent = %self.user_agent,
            cache = %cache,
            query = %self.query,
            proto = %self.proto,
            request_id = %self.request_id,
            "Request"
        );
    }
}
