//! THRUST_UPSTREAM_TIMEOUT: how long thrust waits for the app's response
//! head. The clock counts from the end of the request body, not from its
//! start, so a long upload that is still arriving is never cut: while the
//! client is sending, HTTP_READ_TIMEOUT governs; while the app is not taking
//! the body, or once the body has ended, this limit does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::request_body::{UploadClock, UploadState};

pin_project_lite::pin_project! {
    /// `response` once it completes, or `None` when the app has let `limit`
    /// pass since it last took request body bytes (`within`).
    pub struct Within<'u, F> {
        // Held once, in place: an `async fn` would hold the app's response
        // future twice (as given and as pinned), in every request's future.
        #[pin]
        response: F,
        #[pin]
        deadline: Sleep,
        limit: Duration,
        upload: Option<&'u UploadClock>,
    }
}

/// `response` within `limit` (`upload`: the request's body, if it has one).
pub fn within<F: Future>(
    limit: Duration,
    response: F,
    upload: Option<&UploadClock>,
) -> Within<'_, F> {
    Within {
        response,
        deadline: tokio::time::sleep(limit),
        limit,
        upload,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.response.poll(cx) {
            return Poll::Ready(Some(out));
        }
        while this.deadline.as_mut().poll(cx).is_ready() {
            let limit = *this.limit;
            let next = match this.upload.map(UploadClock::state) {
                None => return Poll::Ready(None),
                Some(UploadState::WaitingOnClient) => Instant::now() + limit,
                Some(UploadState::TakenAt(at)) if at + limit > Instant::now() => at + limit,
                Some(UploadState::TakenAt(_)) => return Poll::Ready(None),
            };
            this.deadline.as_mut().reset(next);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn without_a_body_the_limit_counts_from_the_request() {
        let started = Instant::now();
        assert!(within(LIMIT, std::future::pending::<()>(), None)
            .await
            .is_none());
        assert_eq!(started.elapsed(), LIMIT);
        let answered = within(LIMIT, std::future::ready(7), None).await;
        assert_eq!(answered, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_does_not_run_while_the_client_is_still_sending() {
        let started = Instant::now();
        let upload = UploadClock::new();
        upload.set(UploadState::WaitingOnClient);
        let clock = upload.clone();
        // The client sends its last bytes after 150 s; the app never answers.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(150)).await;
            clock.set(UploadState::TakenAt(Instant::now()));
        });
        let outcome = within(LIMIT, std::future::pending::<()>(), Some(&upload)).await;
        assert!(outcome.is_none());
        // Cut 60 s after the body ended, however long the upload took.
        assert_eq!(started.elapsed(), Duration::from_secs(150) + LIMIT);
    }
}
