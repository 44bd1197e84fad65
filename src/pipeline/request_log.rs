//! One JSON line per request, with the fields Thruster logs.

use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::config::trusted_proxies::{ClientAddr, X_FORWARDED_FOR};
use crate::http::headers::content_length;
use crate::log;
use crate::log::json::spelled;
use crate::pipeline::compression::dictionary::AVAILABLE_DICTIONARY;
use crate::pipeline::forwarding::X_REQUEST_ID;

/// What the log line needs from the request, taken before the request is
/// handed on. Cheap clones (shared bytes), formatted only if a line is written.
pub struct RequestFacts {
    started: Instant,
    method: Method,
    uri: Uri,
    version: Version,
    /// The client, along the chain of trusted proxies.
    remote: ClientAddr,
    user_agent: Option<HeaderValue>,
    content_length: u64,
    content_type: Option<HeaderValue>,
    /// The dictionary the client holds (Available-Dictionary), logged when
    /// the answer was compressed against it.
    dictionary: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
}

/// What the same pass over the request head saw for the rest of the
/// pipeline: how many Host headers, and the client's X-Request-Id.
pub struct Seen {
    pub hosts: usize,
    pub request_id: Option<HeaderValue>,
}

/// A header value's bytes, empty when absent.
fn bytes(value: Option<&HeaderValue>) -> &[u8] {
    value.map_or(&b""[..], HeaderValue::as_bytes)
}

impl RequestFacts {
    /// The facts of `req`, its client found by `client` (told whether the
    /// head holds X-Forwarded-For), and what else the pass saw.
    pub fn of<B>(req: &Request<B>, client: impl FnOnce(bool) -> ClientAddr) -> (Self, Seen) {
        let headers = req.headers();
        let (mut user_agent, mut content_type, mut dictionary) = (None, None, None);
        let mut seen = Seen {
            hosts: 0,
            request_id: None,
        };
        // One pass over the head, where a hashed lookup for each of the
        // seven cost more than the pass.
        let (mut has_length, mut forwarded_for) = (false, false);
        for (name, value) in headers {
            if name == header::HOST {
                seen.hosts += 1;
            } else if name == header::USER_AGENT {
                user_agent.get_or_insert_with(|| value.clone());
            } else if name == header::CONTENT_TYPE {
                content_type.get_or_insert_with(|| value.clone());
            } else if name == header::CONTENT_LENGTH {
                has_length = true;
            } else if name == X_FORWARDED_FOR {
                forwarded_for = true;
            } else if name == X_REQUEST_ID {
                seen.request_id.get_or_insert_with(|| value.clone());
            } else if name == AVAILABLE_DICTIONARY {
                dictionary.get_or_insert_with(|| value.clone());
            }
        }
        let facts = RequestFacts {
            started: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            remote: client(forwarded_for),
            user_agent,
            content_length: if has_length {
                content_length(headers).unwrap_or(0)
            } else {
                0
            },
            content_type,
            dictionary,
            request_id: None,
        };
        (facts, seen)
    }

    pub fn path(&self) -> &str {
        self.uri.path()
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Time since the request arrived.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Writes the line once the response has been sent (or abandoned).
    pub fn log(
        &self,
        status: u16,
        resp_content_type: Option<&HeaderValue>,
        resp_content_length: u64,
        resp_content_encoding: Option<&HeaderValue>,
        cache: Option<&HeaderValue>,
    ) {
        let proto = match self.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        log::line("INFO", "Request", |line| {
            line.text(spelled!("path"), self.uri.path())
                .number(spelled!("status"), u64::from(status))
                .number(spelled!("dur"), self.started.elapsed().as_millis() as u64)
                .text(spelled!("method"), self.method.as_str())
                .number(spelled!("req_content_length"), self.content_length)
                .bytes(
                    spelled!("req_content_type"),
                    bytes(self.content_type.as_ref()),
                )
                .number(spelled!("resp_content_length"), resp_content_length)
                .bytes(spelled!("resp_content_type"), bytes(resp_content_type))
                .text(spelled!("remote_addr"), self.remote.text().as_str())
                .bytes(spelled!("user_agent"), bytes(self.user_agent.as_ref()))
                .bytes(
                    spelled!("cache"),
                    cache.map_or(&b"bypass"[..], |v| v.as_bytes()),
                )
                .text(spelled!("query"), self.uri.query().unwrap_or_default())
                .text(spelled!("proto"), proto)
                .bytes(spelled!("request_id"), bytes(self.request_id.as_ref()))
                .bytes(
                    spelled!("resp_content_encoding"),
                    bytes(resp_content_encoding),
                );
            if resp_content_encoding.is_some_and(|e| e == "dcz") {
                line.bytes(spelled!("dictionary"), bytes(self.dictionary.as_ref()));
            }
        });
    }
}
