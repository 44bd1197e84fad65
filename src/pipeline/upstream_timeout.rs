//! THRUST_UPSTREAM_TIMEOUT: how long thrust waits for the app's response
//! head. The clock counts from the end of the request body, not from its
//! start, so a long upload that is still arriving is never cut: while the
//! client is sending, HTTP_READ_TIMEOUT governs; while the app is not taking
//! the body, or once the body has ended, this limit does.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::http::body::{UploadClock, UploadState};

/// `response` once it completes, or `None` when the app has let `limit`
/// pass since it last took request body bytes (`upload`: the request's
/// body, if it has one).
pub async fn within<F: Future>(
    limit: Duration,
    response: F,
    upload: Option<&UploadClock>,
) -> Option<F::Output> {
    tokio::pin!(response);
    let mut deadline = Instant::now() + limit;
    loop {
        tokio::select! {
            out = &mut response => return Some(out),
            _ = tokio::time::sleep_until(deadline) => {
                deadline = match upload.map(UploadClock::state) {
                    None => return None,
                    Some(UploadState::WaitingOnClient) => Instant::now() + limit,
                    Some(UploadState::TakenAt(at)) if at + limit > Instant::now() => at + limit,
                    Some(UploadState::TakenAt(_)) => return None,
                };
            }
        }
    }
}
