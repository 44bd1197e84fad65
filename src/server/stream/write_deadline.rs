//! HTTP_WRITE_TIMEOUT on a stream, as on a TCP socket: a send times out
//! only when it makes no progress for that long, so long downloads and
//! event streams live as long as the client takes them. The clock runs
//! only while the stream refuses more (no flow-control credit, QUIC not
//! taking the bytes), and starts again each time it takes something.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{ClientStream, Gone};

pub struct WriteDeadline {
    limit: Option<Duration>,
    /// Made on the first wait only: most answers never wait.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl WriteDeadline {
    /// `limit` zero: no deadline.
    pub fn new(limit: Duration) -> Self {
        WriteDeadline {
            limit: (!limit.is_zero()).then_some(limit),
            timer: None,
            armed: false,
        }
    }

    /// `stream.poll_ready`, failing once the stream has refused more for
    /// the whole limit.
    pub fn poll_ready<S: ClientStream>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Gone>> {
        if let Poll::Ready(taken) = stream.poll_ready(cx) {
            self.armed = false;
            return Poll::Ready(taken);
        }
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        if !self.armed {
            self.armed = true;
            let when = Instant::now() + limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(when),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(when))),
            }
        }
        let expired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        tracing::debug!(
            timeout_s = limit.as_secs(),
            "A stream's client took nothing for HTTP_WRITE_TIMEOUT: reset"
        );
        Poll::Ready(Err(Gone))
    }
}
