//! Preconditions and Range, evaluated in RFC 9110 §13.2.2's order, for every
//! answer thrust makes from a representation it holds whole: a cache hit or
//! a file sent for the app. One evaluator, so a hit and a file answer the
//! same request the same way.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::http::conditional;
use crate::http::headers::text;
use crate::http::range::{self, RangeRequest};

/// What to send of a representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole representation, with its own status.
    Whole,
    /// 206: bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 416: the Range selects nothing.
    Unsatisfiable,
    /// 304.
    NotModified,
    /// 412.
    PreconditionFailed,
}

/// The request headers `Conditions` holds, in the order of its fields.
const CONDITIONAL: [HeaderName; 6] = [
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

/// A request's conditional headers and Range, taken before it is forwarded.
/// Empty for methods other than GET and HEAD: the app has already acted on
/// those, so there is nothing left for a precondition to prevent.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    method: Method,
    if_match: Option<HeaderValue>,
    if_unmodified_since: Option<HeaderValue>,
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<HeaderValue>,
    range: Option<HeaderValue>,
    if_range: Option<HeaderValue>,
}

fn value(value: &Option<HeaderValue>) -> Option<&str> {
    value.as_ref().and_then(|v| v.to_str().ok())
}

/// A response's Last-Modified, when it is a valid date.
fn last_modified(headers: &HeaderMap) -> Option<SystemTime> {
    text(headers, header::LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(v.trim()).ok())
}

impl Conditions {
    pub fn of(method: &Method, headers: &HeaderMap) -> Self {
        // One pass over the head's names: most requests carry none of the
        // six, each a hashed lookup otherwise.
        let conditional = |name: &HeaderName| CONDITIONAL.contains(name);
        if !(method == Method::GET || method == Method::HEAD) || !headers.keys().any(conditional) {
            return Conditions {
                method: method.clone(),
                ..Conditions::default()
            };
        }
        let [if_match, if_unmodified_since, if_none_match, if_modified_since, range, if_range] =
            CONDITIONAL.map(|name| headers.get(name).cloned());
        Conditions {
            method: method.clone(),
            if_match,
            if_unmodified_since,
            if_none_match,
            if_modified_since,
            range,
            if_range,
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request has a Range header (GET and HEAD: others keep none).
    pub fn asks_for_range(&self) -> bool {
        self.range.is_some()
    }

    /// What to send of a representation of `size` bytes whose status and
    /// validators (ETag, Last-Modified) are `status` and `headers`.
    pub fn evaluate(&self, status: StatusCode, headers: &HeaderMap, size: u64) -> Outcome {
        // Preconditions apply only where the answer would otherwise be 2xx.
        if !status.is_success() {
            return Outcome::Whole;
        }
        let etag = text(headers, header::ETAG);
        let modified = last_modified(headers);
        // 1, 2: If-Match, or else If-Unmodified-Since.
        if let Some(if_match) = value(&self.if_match) {
            if !conditional::match_strong(if_match, etag) {
                return Outcome::PreconditionFailed;
            }
        } else if let (Some(since), Some(modified)) = (value(&self.if_unmodified_since), modified) {
            if conditional::modified_since(since, modified) {
                return Outcome::PreconditionFailed;
            }
        }
        // 3, 4: If-None-Match, or else If-Modified-Since (GET and HEAD only,
        // which is all a Conditions carries).
        if let Some(if_none_match) = value(&self.if_none_match) {
            if conditional::none_match(if_none_match, etag) {
                return Outcome::NotModified;
            }
        } else if let (Some(since), Some(modified)) = (value(&self.if_modified_since), modified) {
            if conditional::not_modified_since(since, modified) {
                return Outcome::NotModified;
            }
        }
        // 5: Range, for GET of a 200, unless If-Range says the client's copy
        // is another version.
        if self.method != Method::GET || status != StatusCode::OK {
            return Outcome::Whole;
        }
        let Some(asked) = value(&self.range) else {
            return Outcome::Whole;
        };
        if let Some(if_range) = value(&self.if_range) {
            if !conditional::range_still_valid(if_range, etag, modified) {
                return Outcome::Whole;
            }
        }
        match range::parse(Some(asked), size) {
            RangeRequest::Whole => Outcome::Whole,
            RangeRequest::Part { start, end } => Outcome::Part { start, end },
            RangeRequest::Unsatisfiable => Outcome::Unsatisfiable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    const ETAG: &str = "\"v1\"";
    const MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";

    fn outcome(method: Method, request: &[(&str, &str)], status: StatusCode) -> Outcome {
        let representation = headers(&[("etag", ETAG), ("last-modified", MODIFIED)]);
        Conditions::of(&method, &headers(request)).evaluate(status, &representation, 100)
    }

    fn get(request: &[(&str, &str)]) -> Outcome {
        outcome(Method::GET, request, StatusCode::OK)
    }

    #[test]
    fn if_match_and_if_unmodified_since_guard_first() {
        assert_eq!(get(&[("if-match", "\"v0\"")]), Outcome::PreconditionFailed);
        assert_eq!(get(&[("if-match", ETAG)]), Outcome::Whole);
        // If-Match decides alone: If-Unmodified-Since is then not looked at.
        assert_eq!(
            get(&[("if-match", ETAG), ("if-unmodified-since", BEFORE)]),
            Outcome::Whole
        );
        assert_eq!(
            get(&[("if-unmodified-since", BEFORE)]),
            Outcome::PreconditionFailed
        );
        assert_eq!(get(&[("if-unmodified-since", MODIFIED)]), Outcome::Whole);
        // A failed If-Match wins over a matching If-None-Match.
        assert_eq!(
            get(&[("if-match", "\"v0\""), ("if-none-match", ETAG)]),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        assert_eq!(get(&[("if-none-match", ETAG)]), Outcome::NotModified);
        assert_eq!(
            outcome(Method::HEAD, &[("if-none-match", ETAG)], StatusCode::OK),
            Outcome::NotModified
        );
        assert_eq!(
            get(&[("if-modified-since", MODIFIED)]),
            Outcome::NotModified
        );
        assert_eq!(get(&[("if-modified-since", BEFORE)]), Outcome::Whole);
        // A non-matching If-None-Match means changed, whatever the date says.
        assert_eq!(
            get(&[("if-none-match", "\"v0\""), ("if-modified-since", MODIFIED)]),
            Outcome::Whole
        );
    }

    #[test]
    fn range_comes_last_and_follows_if_range() {
        let range = ("range", "bytes=10-19");
        assert_eq!(get(&[range]), Outcome::Part { start: 10, end: 19 });
        assert_eq!(
            get(&[range, ("if-range", ETAG)]),
            Outcome::Part { start: 10, end: 19 }
        );
        assert_eq!(get(&[range, ("if-range", "\"v0\"")]), Outcome::Whole);
        assert_eq!(
            get(&[range, ("if-range", MODIFIED)]),
            Outcome::Part { start: 10, end: 19 }
        );
        assert_eq!(get(&[range, ("if-range", BEFORE)]), Outcome::Whole);
        assert_eq!(get(&[("range", "bytes=100-")]), Outcome::Unsatisfiable);
        // Not-modified is decided before the range.
        assert_eq!(get(&[range, ("if-none-match", ETAG)]), Outcome::NotModified);
        // HEAD and non-200 statuses ignore Range.
        assert_eq!(
            outcome(Method::HEAD, &[range], StatusCode::OK),
            Outcome::Whole
        );
        assert_eq!(
            outcome(Method::GET, &[range], StatusCode::MOVED_PERMANENTLY),
            Outcome::Whole
        );
    }

    #[test]
    fn only_successful_gets_and_heads_are_conditional() {
        let stale = [("if-none-match", ETAG), ("if-match", "\"v0\"")];
        assert_eq!(
            outcome(Method::GET, &stale, StatusCode::NOT_FOUND),
            Outcome::Whole
        );
        assert_eq!(
            outcome(Method::POST, &stale, StatusCode::OK),
            Outcome::Whole
        );
        // Dates that do not parse are ignored.
        assert_eq!(
            get(&[
                ("if-modified-since", "yesterday"),
                ("if-unmodified-since", "soon")
            ]),
            Outcome::Whole
        );
    }
}
