//! A response body on its way to the client: the bytes sent counted, and
//! how it ended reported once (for the log line and the metrics).

use bytes::Bytes;
use http_body::Frame;

use crate::http::body::filtered::{Filtered, FrameFilter};
use crate::http::body::{error_chain, BoxError};

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

/// The count so far and who is told of the ending.
pub struct Watch<F: FnOnce(u64, Ending)> {
    sent: u64,
    on_done: Option<F>,
}

/// A response body that counts the bytes sent and calls `on_done` with the
/// count and how it ended, once it is finished or dropped.
pub fn observed<B, F: FnOnce(u64, Ending)>(inner: B, on_done: F) -> Filtered<B, Watch<F>> {
    let watch = Watch {
        sent: 0,
        on_done: Some(on_done),
    };
    Filtered::new(inner, watch)
}

impl<F: FnOnce(u64, Ending)> Watch<F> {
    fn done(&mut self, ending: Ending) {
        if let Some(done) = self.on_done.take() {
            done(self.sent, ending);
        }
    }
}

impl<F: FnOnce(u64, Ending)> Drop for Watch<F> {
    fn drop(&mut self) {
        self.done(Ending::Dropped);
    }
}

impl<F: FnOnce(u64, Ending)> FrameFilter<BoxError> for Watch<F> {
    type Error = BoxError;

    fn frame(
        &mut self,
        frame: Frame<Bytes>,
        _last: bool,
    ) -> Result<Option<Frame<Bytes>>, BoxError> {
        if let Some(data) = frame.data_ref() {
            self.sent += data.len() as u64;
        }
        Ok(Some(frame))
    }

    fn end(&mut self) -> Result<Option<Frame<Bytes>>, BoxError> {
        self.done(Ending::Complete);
        Ok(None)
    }

    fn failed(&mut self, error: BoxError) -> BoxError {
        self.done(Ending::Failed(error_chain(error.as_ref())));
        error
    }
}
