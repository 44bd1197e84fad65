//! The head of an answer sent on an HTTP/2 or HTTP/3 stream, made ready
//! from the pipeline's response: no connection-level headers (those
//! protocols forbid them), a Date, and the body's length when known.

use http::header::{CONTENT_LENGTH, DATE};
use http::response::Parts;
use http::HeaderValue;
use http_body::Body as _;

use crate::http::body::Body;
use crate::http::date;
use crate::pipeline::forwarding;

/// Readies `parts` for `body`; true when the head ends the stream (no
/// body to send, or a HEAD request's answer).
pub fn ready(parts: &mut Parts, body: &Body, head_only: bool) -> bool {
    forwarding::strip_hop_by_hop(&mut parts.headers, false);
    parts.headers.entry(DATE).or_insert_with(date::now);
    let end = head_only || body.is_end_stream();
    if !end {
        if let Some(length) = body.size_hint().exact() {
            parts
                .headers
                .entry(CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(length));
        }
    }
    end
}
