//! What the cache may store, and under which key: Cache-Control as a
//! shared cache reads it, the status, the size and the response's Vary.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName};
use http::StatusCode;

use crate::http::cache_control::CacheControl;
use crate::http::headers::content_length;

/// The Vary names of a storable response; None for `Vary: *`.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for token in headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let token = token.trim();
        if token == "*" {
            return None;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

/// How long a response may be stored, if at all (Thruster's rules, with
/// `private` and `no-store` always honoured).
pub fn storable(status: StatusCode, headers: &HeaderMap, max_item: u64) -> Option<Duration> {
    let status_ok = (200..400).contains(&status.as_u16())
        && status != StatusCode::NOT_MODIFIED
        && status != StatusCode::PARTIAL_CONTENT;
    if !status_ok {
        return None;
    }
    let lines = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    // Its size looked at only when it may be stored: most answers may not.
    let lifetime = CacheControl::parse(lines).shared_lifetime()?;
    let too_big = content_length(headers).is_some_and(|len| len > max_item);
    (!too_big).then(|| Duration::from_secs(lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    #[test]
    fn storability_follows_status_size_and_cache_control() {
        let public = [("cache-control", "public, max-age=60")];
        assert_eq!(
            storable(StatusCode::OK, &headers(&public), 100),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            storable(StatusCode::MOVED_PERMANENTLY, &headers(&public), 100),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            storable(StatusCode::NOT_MODIFIED, &headers(&public), 100),
            None
        );
        assert_eq!(
            storable(StatusCode::PARTIAL_CONTENT, &headers(&public), 100),
            None
        );
        assert_eq!(
            storable(StatusCode::NOT_FOUND, &headers(&public), 100),
            None
        );
        assert_eq!(
            storable(
                StatusCode::OK,
                &headers(&[
                    ("cache-control", "public, max-age=60"),
                    ("content-length", "101")
                ]),
                100
            ),
            None
        );
        assert_eq!(
            storable(
                StatusCode::OK,
                &headers(&[("cache-control", "public, private, max-age=60")]),
                100
            ),
            None
        );
    }

    #[test]
    fn vary_star_is_never_stored_and_names_are_normalised() {
        assert_eq!(vary_names(&headers(&[("vary", "*")])), None);
        assert_eq!(
            vary_names(&headers(&[
                ("vary", "Accept-Language, accept-encoding"),
                ("vary", "Accept-Language")
            ]))
            .unwrap(),
            vec![
                HeaderName::from_static("accept-encoding"),
                HeaderName::from_static("accept-language")
            ]
        );
        assert_eq!(
            vary_names(&headers(&[("vary", ", ,bad header,")])).unwrap(),
            Vec::<HeaderName>::new()
        );
    }
}
