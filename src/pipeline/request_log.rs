//! One JSON line per request, with the fields Thruster logs.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::protocol::headers::content_length;

/// What the log line needs from the request, taken before the request is
/// handed on. Cheap clones (shared bytes), formatted only if a line is written.
pub struct RequestFacts {
    started: Instant,
    method: Method,
    uri: Uri,
    version: Version,
    remote: SocketAddr,
    user_agent: Option<HeaderValue>,
    content_length: u64,
    content_type: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
}

/// A header value as log text.
pub fn lossy(value: Option<&HeaderValue>) -> Cow<'_, str> {
    value.map_or(Cow::Borrowed(""), |v| String::from_utf8_lossy(v.as_bytes()))
}

impl RequestFacts {
    pub fn of<B>(req: &Request<B>, remote: SocketAddr) -> Self {
        let headers = req.headers();
        RequestFacts {
            started: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            remote,
            user_agent: headers.get(header::USER_AGENT).cloned(),
            content_length: content_length(headers).unwrap_or(0),
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            request_id: None,
        }
    }

    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// Writes the line once the response has been sent (or abandoned).
    pub fn log(
        &self,
        status: u16,
        resp_content_type: Option<&HeaderValue>,
        resp_content_length: u64,
        cache: Option<&HeaderValue>,
    ) {
        let proto = match self.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        let cache = cache.map_or(Cow::Borrowed("bypass"), |v| lossy(Some(v)));
        tracing::info!(
            path = %self.uri.path(),
            status,
            dur = self.started.elapsed().as_millis() as u64,
            method = %self.method,
            req_content_length = self.content_length,
            req_content_type = %lossy(self.content_type.as_ref()),
            resp_content_length,
            resp_content_type = %lossy(resp_content_type),
            remote_addr = %self.remote,
            user_agent = %lossy(self.user_agent.as_ref()),
            cache = %cache,
            query = %self.uri.query().unwrap_or_default(),
            proto = %proto,
            request_id = %lossy(self.request_id.as_ref()),
            "Request"
        );
    }
}
