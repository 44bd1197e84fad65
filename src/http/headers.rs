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

/// The declared Content-Length, when it is well-formed (`declared_length`).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    declared_length(headers).ok().flatten()
}

/// A Content-Length that is not one plain decimal number.
#[derive(Debug, PartialEq)]
pub struct MalformedLength;

/// The declared Content-Length: `Ok(None)` when there is none. Each value
/// must be digits only (RFC 9110 §8.6; Rust's own parser would take `+5`),
/// and several values, in one header as a list or in several, must agree,
/// as hyper requires of HTTP/1 requests.
pub fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, MalformedLength> {
    let mut declared = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let digits = item.trim_ascii();
            // 19 digits always fit in a u64.
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(MalformedLength);
            }
            let n = digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if declared.is_some_and(|earlier| earlier != n) {
                return Err(MalformedLength);
            }
            declared = Some(n);
        }
    }
    Ok(declared)
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
    fn a_content_length_must_be_plain_digits_and_agree() {
        let length = |v: &'static str| declared_length(&headers(&[("content-length", v)]));
        assert_eq!(length("5"), Ok(Some(5)));
        assert_eq!(length("5, 5"), Ok(Some(5)));
        assert_eq!(length("18446744073709551615"), Err(MalformedLength));
        assert_eq!(declared_length(&HeaderMap::new()), Ok(None));
        for bad in ["+5", "-1", "0x10", "5 5", "", "5, 6", "1e3"] {
            assert_eq!(length(bad), Err(MalformedLength), "{bad}");
        }
        let two = headers(&[("content-length", "5"), ("content-length", "6")]);
        assert_eq!(declared_length(&two), Err(MalformedLength));
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
