//! Conditional request headers, each read on its own (RFC 9110 §13.1):
//! If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range.
//! The order they are evaluated in is `pipeline::preconditions`' business.

use std::time::SystemTime;

/// Splits an entity-tag list on commas that are outside quotes.
fn tags(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return None;
        }
        let mut in_quotes = false;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                if *c == '"' {
                    in_quotes = !in_quotes;
                }
                *c == ',' && !in_quotes
            })
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let tag = rest[..end].trim();
        rest = &rest[end..];
        Some(tag)
    })
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// If-Match with strong comparison: true when `etag` is listed (or `*` and
/// the representation exists, which it does whenever this is asked).
pub fn match_strong(if_match: &str, etag: Option<&str>) -> bool {
    if if_match.trim() == "*" {
        return true;
    }
    let Some(etag) = etag.filter(|etag| !etag.starts_with("W/")) else {
        return false;
    };
    tags(if_match).any(|tag| tag == etag)
}

/// If-None-Match with weak comparison: true when `etag` is listed (or `*`).
pub fn none_match(if_none_match: &str, etag: Option<&str>) -> bool {
    if if_none_match.trim() == "*" {
        return true;
    }
    let Some(etag) = etag else {
        return false;
    };
    tags(if_none_match).any(|tag| opaque(tag) == opaque(etag))
}

/// If-Modified-Since: true when the resource has not changed since the date.
/// Unparsable dates are ignored, as the RFC says.
pub fn not_modified_since(if_modified_since: &str, modified: SystemTime) -> bool {
    match httpdate::parse_http_date(if_modified_since.trim()) {
        Ok(since) => whole_seconds(modified) <= whole_seconds(since),
        Err(_) => false,
    }
}

/// If-Unmodified-Since: true when the resource changed after the date.
/// Unparsable dates are ignored, as the RFC says.
pub fn modified_since(if_unmodified_since: &str, modified: SystemTime) -> bool {
    match httpdate::parse_http_date(if_unmodified_since.trim()) {
        Ok(since) => whole_seconds(modified) > whole_seconds(since),
        Err(_) => false,
    }
}

/// If-Range: the Range applies only when the validator matches exactly
/// (strong comparison for entity tags, equality for dates).
pub fn range_still_valid(if_range: &str, etag: Option<&str>, modified: Option<SystemTime>) -> bool {
    let if_range = if_range.trim();
    if if_range.starts_with('"') {
        return etag.is_some_and(|etag| !etag.starts_with("W/") && etag == if_range);
    }
    if if_range.starts_with("W/") {
        return false;
    }
    match (httpdate::parse_http_date(if_range), modified) {
        (Ok(date), Some(modified)) => whole_seconds(date) == whole_seconds(modified),
        _ => false,
    }
}

fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(none_match("\"abc\"", Some("\"abc\"")));
        assert!(none_match("W/\"abc\"", Some("\"abc\"")));
        assert!(none_match("\"x\", W/\"abc\"", Some("W/\"abc\"")));
        assert!(none_match("*", None));
        assert!(!none_match("\"abc\"", None));
        assert!(!none_match("\"abcd\"", Some("\"abc\"")));
        assert!(none_match("\"a,b\", \"c\"", Some("\"a,b\"")));
        assert!(!none_match("", Some("\"abc\"")));
        assert!(!none_match(",,,", Some("\"abc\"")));
        assert!(!none_match("\"é\"", Some("\"e\"")));
    }

    #[test]
    fn if_match_compares_strongly() {
        assert!(match_strong("\"abc\"", Some("\"abc\"")));
        assert!(match_strong("\"x\", \"abc\"", Some("\"abc\"")));
        assert!(match_strong("*", None));
        assert!(!match_strong("W/\"abc\"", Some("\"abc\"")));
        assert!(!match_strong("\"abc\"", Some("W/\"abc\"")));
        assert!(!match_strong("\"abc\"", None));
        assert!(!match_strong("", Some("\"abc\"")));
    }

    #[test]
    fn if_unmodified_since_uses_whole_seconds() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert!(!modified_since("Tue, 14 Nov 2023 22:13:20 GMT", modified));
        assert!(modified_since("Tue, 14 Nov 2023 22:13:19 GMT", modified));
        assert!(!modified_since("not a date", modified));
    }

    #[test]
    fn if_modified_since_uses_whole_seconds() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert!(not_modified_since(
            "Tue, 14 Nov 2023 22:13:20 GMT",
            modified
        ));
        assert!(!not_modified_since(
            "Tue, 14 Nov 2023 22:13:19 GMT",
            modified
        ));
        assert!(!not_modified_since("yesterday", modified));
        assert!(!not_modified_since("", modified));
    }

    #[test]
    fn if_range_needs_an_exact_match() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(range_still_valid("\"v1\"", Some("\"v1\""), None));
        assert!(!range_still_valid("\"v1\"", Some("W/\"v1\""), None));
        assert!(!range_still_valid("W/\"v1\"", Some("W/\"v1\""), None));
        assert!(range_still_valid(
            "Tue, 14 Nov 2023 22:13:20 GMT",
            None,
            Some(modified)
        ));
        assert!(!range_still_valid(
            "Tue, 14 Nov 2023 22:13:21 GMT",
            None,
            Some(modified)
        ));
        assert!(!range_still_valid(
            "garbage",
            Some("\"v1\""),
            Some(modified)
        ));
    }
}
