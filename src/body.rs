//! The one body type of the pipeline and the wrappers around client bodies.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Why a client's request body could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("request body larger than MAX_REQUEST_BODY")]
    TooLarge,
    #[error("request body not received within HTTP_READ_TIMEOUT")]
    TimedOut,
    #[error("malformed request body: {0}")]
    Malformed(BoxError),
}

impl ClientBodyError {
    /// Finds a client body failure anywhere in an error's source chain.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<ClientBodyError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

/// Who an upload is waiting on, for THRUST_UPSTREAM_TIMEOUT: the app's
/// clock must not run while the client is still sending.
pub struct UploadClock {
    state: Mutex<UploadState>,
}

#[derive(Clone, Copy)]
pub enum UploadState {
    /// The client has not sent the next bytes yet (HTTP_READ_TIMEOUT's
    /// business).
    WaitingOnClient,
    /// When the app last took body bytes, or the body ended.
    TakenAt(Instant),
}

impl UploadClock {
    pub fn new() -> Arc<Self> {
        Arc::new(UploadClock {
            state: Mutex::new(UploadState::TakenAt(Instant::now())),
        })
    }

    pub fn state(&self) -> UploadState {
        self.state
            .lock()
            .map_or(UploadState::WaitingOnClient, |state| *state)
    }

    fn set(&self, state: UploadState) {
        if let Ok(mut current) = self.state.lock() {
            *current = state;
        }
    }
}

pin_project! {
    /// A client's request body with a byte limit and a deadline for the
    /// whole body, telling its clock who it waits on.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        limit: Option<u64>,
        received: u64,
        #[pin]
        deadline: Option<Sleep>,
        clock: Arc<UploadClock>,
    }
}

impl<B> RequestBody<B> {
    /// `limit` of `None` means no limit; `read_timeout` of `None`, no deadline.
    pub fn new(
        inner: B,
        limit: Option<u64>,
        read_timeout: Option<Duration>,
        clock: Arc<UploadClock>,
    ) -> Self {
        RequestBody {
            inner,
            limit,
            received: 0,
            deadline: read_timeout.map(|t| tokio::time::sleep_until(Instant::now() + t)),
            clock,
        }
    }
}

impl<B> HttpBody for RequestBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        this.clock.set(match polled {
            Poll::Pending => UploadState::WaitingOnClient,
            Poll::Ready(_) => UploadState::TakenAt(Instant::now()),
        });
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    if this.limit.is_some_and(|limit| *this.received > limit) {
                        return Poll::Ready(Some(Err(ClientBodyError::TooLarge)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(ClientBodyError::Malformed(e.into()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_pin_mut()
                    .is_some_and(|d| d.poll(cx).is_ready());
                if expired {
                    Poll::Ready(Some(Err(ClientBodyError::TimedOut)))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body that counts the bytes sent and calls `on_done` with the
    /// count once the body is finished or dropped (client gone).
    pub struct Observed<B, F: FnOnce(u64)> {
        #[pin]
        inner: B,
        sent: u64,
        on_done: Option<F>,
    }

    impl<B, F: FnOnce(u64)> PinnedDrop for Observed<B, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(done) = this.on_done.take() {
                done(*this.sent);
            }
        }
    }
}

impl<B, F: FnOnce(u64)> Observed<B, F> {
    pub fn new(inner: B, on_done: F) -> Self {
        Observed {
            inner,
            sent: 0,
            on_done: Some(on_done),
        }
    }
}

impl<B, F> HttpBody for Observed<B, F>
where
    B: HttpBody<Data = Bytes>,
    F: FnOnce(u64),
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(done) = this.on_done.take() {
                    done(*this.sent);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
