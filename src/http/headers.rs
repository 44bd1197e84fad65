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

/// Whether a request carries a field HTTP/2 and HTTP/3 forbid (RFC 9113
/// §8.2.2, RFC 9114 §4.2): one about the connection rather than the
/// message, or a TE other than `trailers`.
pub fn has_connection_specific(headers: &HeaderMap) -> bool {
    const FORBIDDEN: [&str; 5] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ];
    FORBIDDEN.iter().any(|name| headers.contains_key(*name))
        || headers
            .get_all(header::TE)
            .iter()
            .any(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn connection_specific_fields_are_found() {
        assert!(!has_connection_specific(&headers(&[
            ("te", "trailers"),
            ("accept", "*/*")
        ])));
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            let h: HeaderMap = [(HeaderName::from_static(name), HeaderValue::from_static("x"))]
                .into_iter()
                .collect();
            assert!(has_connection_specific(&h), "{name}");
        }
        assert!(has_connection_specific(&headers(&[("te", "gzip")])));
    }
}
