//! The body an app sends beside a file it names (Django's and many Rack
//! apps' short "sent by the front server" text; Rails sends none): read
//! to its end and thrown away, so the app's connection goes back to the
//! pool. Dropped unread, it would close that connection and cost the next
//! request a new one.

use std::time::Duration;

use http_body::Body as _;
use http_body_util::BodyExt;

use crate::http::body::Body;

/// Past this, closing the app's connection costs less than reading on.
const READ_AT_MOST: u64 = 64 * 1024;
/// A body still coming after this closes the connection instead: a stuck
/// app must not hold one of its connections for nothing.
const WAIT_AT_MOST: Duration = Duration::from_secs(2);

/// Reads `body` to its end in a task of its own when it is short and
/// sized, or drops it (closing its connection) when it is not.
pub fn release(body: Body) {
    if body.is_end_stream() || body.size_hint().upper().is_none_or(|n| n > READ_AT_MOST) {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let read = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(WAIT_AT_MOST, read).await;
    });
}
