//! A client's request body on its way to the app: MAX_REQUEST_BODY, a
//! deadline for the whole body (HTTP_READ_TIMEOUT), the bytes counted for
//! metrics, and a clock telling THRUST_UPSTREAM_TIMEOUT who the upload is
//! waiting on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::http::body::filtered::{Filtered, FrameFilter};
use crate::http::body::BoxError;

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

    pub fn set(&self, state: UploadState) {
        if let Ok(mut current) = self.state.lock() {
            *current = state;
        }
    }
}

/// The request body's limit, count and clock.
pub struct Upload {
    limit: Option<u64>,
    received: u64,
    clock: Arc<UploadClock>,
    // thrust_http_request_body_bytes, with metrics on.
    counted: Option<Counter>,
}

pub type RequestBody<B> = Filtered<B, Upload>;

/// `limit` of `None` means no limit; `read_timeout` of `None`, no deadline.
pub fn request_body<B>(
    inner: B,
    limit: Option<u64>,
    read_timeout: Option<Duration>,
    clock: Arc<UploadClock>,
    counted: Option<Counter>,
) -> RequestBody<B> {
    let upload = Upload {
        limit,
        received: 0,
        clock,
        counted,
    };
    Filtered::with_deadline(inner, upload, read_timeout)
}

impl<E: Into<BoxError>> FrameFilter<E> for Upload {
    type Error = ClientBodyError;

    fn polled(&mut self, ready: bool) {
        self.clock.set(match ready {
            false => UploadState::WaitingOnClient,
            true => UploadState::TakenAt(Instant::now()),
        });
    }

    fn frame(
        &mut self,
        frame: Frame<Bytes>,
        _last: bool,
    ) -> Result<Option<Frame<Bytes>>, ClientBodyError> {
        if let Some(data) = frame.data_ref() {
            self.received += data.len() as u64;
            if let Some(counted) = &self.counted {
                counted.inc_by(data.len() as u64);
            }
            if self.limit.is_some_and(|limit| self.received > limit) {
                return Err(ClientBodyError::TooLarge);
            }
        }
        Ok(Some(frame))
    }

    fn failed(&mut self, error: E) -> ClientBodyError {
        ClientBodyError::Malformed(error.into())
    }

    fn timed_out(&mut self) -> Option<ClientBodyError> {
        Some(ClientBodyError::TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    /// A client body that sends `first`, then nothing more.
    fn stalled(first: &'static [u8]) -> impl http_body::Body<Data = Bytes, Error = BoxError> {
        let frames =
            futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(first)))])
                .chain(futures_util::stream::pending());
        StreamBody::new(frames)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_arriving_at_the_read_timeout_is_cut() {
        let started = Instant::now();
        let clock = UploadClock::new();
        let timeout = Some(Duration::from_secs(30));
        let mut body = std::pin::pin!(request_body(
            stalled(b"part"),
            None,
            timeout,
            clock.clone(),
            None
        ));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "part");
        let cut = body.frame().await.unwrap();
        assert!(matches!(cut, Err(ClientBodyError::TimedOut)));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // While it waited, the upload clock said so.
        assert!(matches!(clock.state(), UploadState::WaitingOnClient));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_max_request_body_is_refused() {
        let clock = UploadClock::new();
        let mut body = std::pin::pin!(request_body(stalled(b"12345"), Some(4), None, clock, None));
        assert!(matches!(
            body.frame().await,
            Some(Err(ClientBodyError::TooLarge))
        ));
        assert!(body.frame().await.is_none());
    }
}
