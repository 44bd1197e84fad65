//! Small header helpers shared across the pipeline.

use http::header::{self, AsHeaderName, HeaderMap, HeaderName, HeaderValue};

/// A header's value as text, when it is valid visible ASCII.
pub fn text<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sets a header; a value that is not a valid header value is left out.
pub fn set(headers: &mut HeaderMap, name: HeaderName, value: impl TryInto<HeaderValue>) {
    if let Ok(value) = value.try_into() {
        headers.insert(name, value);
    }
}

/// The declared Content-Length, when it is a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    text(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

/// Adds `Accept-Encoding` to Vary unless it is there already.
pub fn vary_on_accept_encoding(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("accept-encoding") || name.trim() == "*");
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Turns a strong entity tag weak: the bytes sent differ from the original.
pub fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(etag) = text(headers, header::ETAG) {
        if !etag.starts_with("W/") {
            let weak = format!("W/{etag}");
            set(headers, header::ETAG, weak);
        }
    }
}
