//! One wrapper for every body that watches or re-encodes the frames of
//! another on their way through: the request body's limit and deadline, the
//! response's byte count and ending, the cache's copy of a miss, the
//! compressor. Each says what it does with a frame (`FrameFilter`);
//! `Filtered` does the polling, the ending and the optional deadline once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// What a `Filtered` body does at each step of the body it wraps, whose
/// error type is `E`.
pub trait FrameFilter<E> {
    type Error;
    /// Whether the filtered body is as long as the inner one (false when
    /// frames are re-encoded): its size hint and end are then the inner's.
    const SAME_LENGTH: bool = true;

    /// Every poll of the inner body: whether it had something (a frame, its
    /// end or an error) or made the caller wait.
    fn polled(&mut self, _ready: bool) {}
    /// A frame of the inner body, `last` when the inner body says it has
    /// ended (a body of known length is not polled past its last byte).
    /// Returns what to pass on; `None` polls the inner body again.
    fn frame(
        &mut self,
        frame: Frame<Bytes>,
        last: bool,
    ) -> Result<Option<Frame<Bytes>>, Self::Error>;
    /// The inner body ended: a last frame to add, if any.
    fn end(&mut self) -> Result<Option<Frame<Bytes>>, Self::Error> {
        Ok(None)
    }
    /// The inner body failed: the error to pass on.
    fn failed(&mut self, error: E) -> Self::Error;
    /// The deadline passed while the inner body made the caller wait.
    fn timed_out(&mut self) -> Option<Self::Error> {
        None
    }
}

pin_project! {
    /// `inner` passed through `filter`, ended early by `deadline` if given.
    pub struct Filtered<B, F> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Option<Sleep>,
        filter: F,
        finished: bool,
    }
}

impl<B, F> Filtered<B, F> {
    pub fn new(inner: B, filter: F) -> Self {
        Filtered {
            inner,
            deadline: None,
            filter,
            finished: false,
        }
    }

    /// With a deadline for the whole body (none when `limit` is `None`).
    pub fn with_deadline(inner: B, filter: F, limit: Option<Duration>) -> Self {
        Filtered {
            deadline: limit.map(|t| tokio::time::sleep_until(Instant::now() + t)),
            ..Filtered::new(inner, filter)
        }
    }
}

impl<B, F> HttpBody for Filtered<B, F>
where
    B: HttpBody<Data = Bytes>,
    F: FrameFilter<B::Error>,
{
    type Data = Bytes;
    type Error = F::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, F::Error>>> {
        let mut this = self.project();
        loop {
            if *this.finished {
                return Poll::Ready(None);
            }
            let polled = this.inner.as_mut().poll_frame(cx);
            this.filter.polled(polled.is_ready());
            let passed = match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    let last = this.inner.is_end_stream();
                    this.filter.frame(frame, last)
                }
                Poll::Ready(Some(Err(error))) => Err(this.filter.failed(error)),
                Poll::Ready(None) => {
                    *this.finished = true;
                    this.filter.end()
                }
                Poll::Pending => {
                    let expired = this
                        .deadline
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|deadline| deadline.poll(cx).is_ready());
                    match expired.then(|| this.filter.timed_out()).flatten() {
                        Some(error) => Err(error),
                        None => return Poll::Pending,
                    }
                }
            };
            match passed {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => continue,
                Err(error) => {
                    *this.finished = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished || (F::SAME_LENGTH && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if F::SAME_LENGTH {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}
