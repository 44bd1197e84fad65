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
use prometheus_client::metrics::counter::Counter;
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
        // thrust_http_request_body_bytes, with metrics on.
        counted: Option<Counter>,
    }
}

impl<B> RequestBody<B> {
    /// `limit` of `None` means no limit; `read_timeout` of `None`, no deadline.
    pub fn new(
        inner: B,
        limit: Option<u64>,
        read_timeout: Option<Duration>,
        clock: Arc<UploadClock>,
        counted: Option<Counter>,
    ) -> Self {
        RequestBody {
            inner,
            limit,
            received: 0,
            deadline: read_timeout.map(|t| tokio::time::sleep_until(Instant::now() + t)),
            clock,
            counted,
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
                    if let Some(counted) = this.counted {
                        counted.inc_by(data.len() as u64);
                    }
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

/// An error and its sources, as one line: "a: b: c".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// How a response body ended.
pub enum Ending {
    /// Sent to its end.
    Complete,
    /// Its source failed part-way (the app's connection broke, a file
    /// shrank): the connection is closed, so the client sees a short body.
    Failed(String),
    /// Dropped before its end: the client went away, or its connection
    /// failed.
    Dropped,
}

pin_project! {
    /// A response body that counts the bytes sent and calls `on_done` with
    /// the count and how it ended, once it is finished or dropped.
    pub struct Observed<B, F: FnOnce(u64, Ending)> {
        #[pin]
        inner: B,
        sent: u64,
        on_done: Option<F>,
    }

    impl<B, F: FnOnce(u64, Ending)> PinnedDrop for Observed<B, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(done) = this.on_done.take() {
                done(*this.sent, Ending::Dropped);
            }
        }
    }
}

impl<B, F: FnOnce(u64, Ending)> Observed<B, F> {
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
    B: HttpBody<Data = Bytes, Error = BoxError>,
    F: FnOnce(u64, Ending),
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let ending = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.sent += data.len() as u64;
                }
                None
            }
            Poll::Ready(None) => Some(Ending::Complete),
            Poll::Ready(Some(Err(e))) => Some(Ending::Failed(error_chain(e.as_ref()))),
            Poll::Pending => None,
        };
        if let Some(ending) = ending {
            if let Some(done) = this.on_done.take() {
                done(*this.sent, ending);
            }
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
