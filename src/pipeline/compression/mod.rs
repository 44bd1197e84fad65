//! Response compression: which responses are compressed, with what, and the
//! streaming body that does it.

pub mod codec;
pub mod dictionary;
mod gzip;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;

use crate::config::{Config, Encoding};
use crate::http::accept_encoding::negotiate;
use crate::http::body::filtered::{Filtered, FrameFilter};
use crate::http::body::{self, Body, BoxError};
use crate::http::headers::{content_length, text, vary_on_accept_encoding, weaken_etag};
use codec::{Compressor, Jitter};

/// Smaller bodies gain too little to be worth the work.
const MIN_SIZE: u64 = 1024;

/// Request headers that make an answer personal (with
/// GZIP_COMPRESSION_DISABLE_ON_AUTH it is not compressed): looked for in
/// one pass over the head's names, not hashed and looked up each.
const CREDENTIALS: [HeaderName; 3] = [
    header::COOKIE,
    header::AUTHORIZATION,
    HeaderName::from_static("x-csrf-token"),
];

/// What compression needs from the request, taken before it is forwarded.
pub struct CompressionRequest {
    accept_encoding: Option<HeaderValue>,
    has_credentials: bool,
    method: Method,
    /// The request target: it keys the padding of streamed responses.
    target: Option<PathAndQuery>,
}

impl CompressionRequest {
    pub fn of<B>(req: &Request<B>) -> Self {
        // One pass over the head, where a hashed lookup cost more.
        let (mut accept_encoding, mut has_credentials) = (None, false);
        for (name, value) in req.headers() {
            if name == header::ACCEPT_ENCODING {
                // Shared with the request's bytes, not copied.
                accept_encoding.get_or_insert_with(|| value.clone());
            } else {
                has_credentials |= CREDENTIALS.contains(name);
            }
        }
        CompressionRequest {
            accept_encoding,
            has_credentials,
            method: req.method().clone(),
            target: req.uri().path_and_query().cloned(),
        }
    }

    fn target(&self) -> &str {
        target_text(&self.target)
    }

    pub fn accept_encoding(&self) -> Option<&str> {
        self.accept_encoding.as_ref().and_then(|v| v.to_str().ok())
    }
}

/// The request target as text: empty for a request without one.
fn target_text(target: &Option<PathAndQuery>) -> &str {
    target.as_ref().map_or("", PathAndQuery::as_str)
}

/// Content types worth compressing. An allow-list: images, archives, audio
/// and video are already compressed, and unknown binary types are left alone.
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // Compared without lowercasing into a new string: this runs for every
    // response.
    let starts = |prefix: &str| {
        essence
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let ends = |suffix: &str| {
        essence
            .len()
            .checked_sub(suffix.len())
            .and_then(|start| essence.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
    };
    starts("text/")
        || ends("+json")
        || ends("+xml")
        || COMPRESSIBLE_TYPES
            .iter()
            .any(|known| essence.eq_ignore_ascii_case(known))
}

/// Types compressed besides `text/*`, `*+json` and `*+xml`.
const COMPRESSIBLE_TYPES: [&str; 21] = [
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/wasm",
    "application/x-ndjson",
    "application/graphql-response+json",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    "application/x-font-otf",
    "application/x-font-opentype",
    "application/x-font-truetype",
    "font/ttf",
    "font/otf",
    "font/eot",
    "font/opentype",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
];

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.trim()
                .split('=')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(token))
        })
}

/// Whether a response is worth compressing at all, whoever asks for it.
pub fn worth_compressing(config: &Config, status: StatusCode, headers: &HeaderMap) -> bool {
    if !config.compression
        || status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
        || headers.contains_key(header::CONTENT_ENCODING)
        || headers.contains_key(header::CONTENT_RANGE)
        || has_token(headers, header::CACHE_CONTROL, "no-transform")
    {
        return false;
    }
    let compressible_type = text(headers, header::CONTENT_TYPE).is_some_and(compressible);
    let length = content_length(headers);
    compressible_type && length.is_none_or(|len| len >= MIN_SIZE)
}

/// The encoding to apply to a response for this request, or None to send it
/// as it is.
pub fn choose(
    config: &Config,
    request: &CompressionRequest,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<Encoding> {
    // The client's side first: without an acceptable encoding, nothing else matters.
    let encoding = negotiate(request.accept_encoding(), &config.encodings)?;
    if !worth_compressing(config, status, headers) {
        return None;
    }
    if config.compression_disable_on_auth
        && (request.has_credentials
            || headers.contains_key(header::SET_COOKIE)
            || has_token(headers, header::CACHE_CONTROL, "private")
            || has_token(headers, header::CACHE_CONTROL, "no-store")
            || has_token(headers, header::VARY, "cookie"))
    {
        return None;
    }
    Some(encoding)
}

/// Rewrites headers for a body encoded with `encoding`.
pub fn mark_encoded(headers: &mut HeaderMap, encoding: Encoding) {
    headers.insert(
        header::CONTENT_ENCODING,
        http::HeaderValue::from_static(encoding.token()),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    weaken_etag(headers);
}

/// Compresses a response when `choose` says so. Compressible responses
/// always carry `Vary: Accept-Encoding`, compressed or not.
pub fn apply(
    config: &Config,
    jitter: &std::sync::Arc<Jitter>,
    request: &CompressionRequest,
    response: Response<Body>,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let Some(encoding) = choose(config, request, parts.status, &parts.headers) else {
        if config.compression
            && text(&parts.headers, header::CONTENT_TYPE).is_some_and(compressible)
            && !parts.headers.contains_key(header::CONTENT_ENCODING)
        {
            vary_on_accept_encoding(&mut parts.headers);
        }
        return Response::from_parts(parts, body);
    };
    let size = content_length(&parts.headers);
    mark_encoded(&mut parts.headers, encoding);
    vary_on_accept_encoding(&mut parts.headers);
    tracing::debug!(
        encoding = encoding.token(),
        target = request.target(),
        "Compressing response"
    );
    if request.method == Method::HEAD {
        return Response::from_parts(parts, body::empty());
    }
    let encoder = Encoder {
        encoding,
        size,
        state: State::Waiting {
            jitter: jitter.clone(),
            target: request.target.clone(),
        },
    };
    Response::from_parts(parts, body::boxed(Filtered::new(body, encoder)))
}

enum State {
    /// No data yet: the padding depends on the first chunk.
    Waiting {
        jitter: std::sync::Arc<Jitter>,
        target: Option<PathAndQuery>,
    },
    Running(Compressor),
    Done,
}

/// A body compressed chunk by chunk, flushed after each chunk.
struct Encoder {
    encoding: Encoding,
    size: Option<u64>,
    state: State,
}

impl Encoder {
    fn compressor(&mut self, first: &[u8]) -> std::io::Result<&mut Compressor> {
        if let State::Waiting { jitter, target } = &self.state {
            // Keyed on the target and the first chunk: a response that
            // reflects an attacker's guess gets a different padding per guess.
            let padding = jitter.padding((target_text(target), first));
            self.state = State::Running(Compressor::new(self.encoding, padding, self.size)?);
        }
        match &mut self.state {
            State::Running(compressor) => Ok(compressor),
            _ => Err(std::io::Error::other("compressor already finished")),
        }
    }
}

impl FrameFilter<BoxError> for Encoder {
    type Error = BoxError;
    const SAME_LENGTH: bool = false;

    fn frame(
        &mut self,
        frame: Frame<Bytes>,
        _last: bool,
    ) -> Result<Option<Frame<Bytes>>, BoxError> {
        let Ok(data) = frame.into_data() else {
            return Ok(None); // trailers do not survive re-encoding
        };
        let out = self.compressor(&data)?.chunk(&data)?;
        Ok((!out.is_empty()).then(|| Frame::data(out)))
    }

    fn end(&mut self) -> Result<Option<Frame<Bytes>>, BoxError> {
        self.compressor(&[])?;
        let State::Running(compressor) = std::mem::replace(&mut self.state, State::Done) else {
            return Ok(None);
        };
        Ok(Some(Frame::data(compressor.finish()?)))
    }

    fn failed(&mut self, error: BoxError) -> BoxError {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_types_are_an_allow_list() {
        for yes in [
            "text/html; charset=utf-8",
            "application/json",
            "application/ld+json",
            "image/svg+xml",
            "application/javascript",
            "text/event-stream",
            "font/ttf",
            "application/wasm",
            "application/x-ndjson",
            "application/rss+xml",
            "TEXT/CSS",
        ] {
            assert!(compressible(yes), "{yes}");
        }
        for no in [
            "image/png",
            "image/jpeg",
            "image/webp",
            "application/zip",
            "application/gzip",
            "video/mp4",
            "audio/mpeg",
            "application/octet-stream",
            "font/woff2",
            "",
            ";",
            "text",
        ] {
            assert!(!compressible(no), "{no}");
        }
    }
}
