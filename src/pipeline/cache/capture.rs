//! A miss's body copied while it streams to the first client, to be stored
//! once complete. Each copy is bounded by MAX_CACHE_ITEM_SIZE, and all the
//! copies under way together by a budget (`CaptureBudget`): a thousand slow
//! clients each reading a large storable miss must not hold a thousand
//! copies. A copy that would pass either bound is abandoned; the response
//! itself goes on untouched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body::Frame;

use crate::http::body::filtered::{Filtered, FrameFilter};
use crate::http::body::{Body, BoxError};

/// Bytes all captures under way may hold together.
#[derive(Clone)]
pub struct CaptureBudget {
    left: Arc<AtomicU64>,
}

impl CaptureBudget {
    pub fn new(bytes: u64) -> Self {
        CaptureBudget {
            left: Arc::new(AtomicU64::new(bytes)),
        }
    }

    /// Takes `bytes` from the budget, if that many are left.
    fn take(&self, bytes: u64) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.left.fetch_add(bytes, Ordering::AcqRel);
    }
}

/// The copy of one body and the budget it holds.
struct Copy {
    bytes: BytesMut,
    budget: CaptureBudget,
}

impl Drop for Copy {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes.len() as u64);
    }
}

/// A body copied as it streams, handed to `on_done` once whole (`None`
/// when the copy was abandoned: past a bound, or its source failed).
pub type Capture<F> = Filtered<Body, Copying<F>>;

/// The copy under way (none once abandoned) and who gets it when complete.
pub struct Copying<F> {
    copy: Option<Copy>,
    limit: u64,
    on_done: Option<F>,
}

/// `inner`, copied up to `limit` bytes within `budget`.
pub fn capture<F: FnOnce(Option<Bytes>)>(
    inner: Body,
    limit: u64,
    budget: CaptureBudget,
    on_done: F,
) -> Capture<F> {
    let copying = Copying {
        copy: Some(Copy {
            bytes: BytesMut::new(),
            budget,
        }),
        limit,
        on_done: Some(on_done),
    };
    Filtered::new(inner, copying)
}

impl<F: FnOnce(Option<Bytes>)> Copying<F> {
    /// Adds `data` to the copy, or abandons the copy when it would pass the
    /// item limit or the shared budget.
    fn keep(&mut self, data: &[u8]) {
        let Some(held) = self.copy.as_mut() else {
            return;
        };
        let grown = (held.bytes.len() + data.len()) as u64;
        if grown > self.limit || !held.budget.take(data.len() as u64) {
            self.abandon();
            return;
        }
        held.bytes.extend_from_slice(data);
    }

    /// Hands the copied body over, once; its budget is free again (what is
    /// stored is bounded by CACHE_SIZE).
    fn complete(&mut self) {
        if let (Some(mut held), Some(done)) = (self.copy.take(), self.on_done.take()) {
            let bytes = std::mem::take(&mut held.bytes).freeze();
            held.budget.give_back(bytes.len() as u64);
            drop(held);
            done(Some(bytes));
        }
    }

    /// Drops the copy (its budget back) and says so, once.
    fn abandon(&mut self) {
        self.copy = None;
        if let Some(done) = self.on_done.take() {
            done(None);
        }
    }
}

impl<F: FnOnce(Option<Bytes>)> FrameFilter<BoxError> for Copying<F> {
    type Error = BoxError;

    fn frame(&mut self, frame: Frame<Bytes>, last: bool) -> Result<Option<Frame<Bytes>>, BoxError> {
        if let Some(data) = frame.data_ref() {
            self.keep(data);
        }
        // A body with a known length is not polled past its last byte, so
        // completion is noticed here rather than at the end.
        if last {
            self.complete();
        }
        Ok(Some(frame))
    }

    fn end(&mut self) -> Result<Option<Frame<Bytes>>, BoxError> {
        self.complete();
        Ok(None)
    }

    fn failed(&mut self, error: BoxError) -> BoxError {
        self.abandon();
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copying(budget: &CaptureBudget, limit: u64) -> Copying<fn(Option<Bytes>)> {
        Copying {
            copy: Some(Copy {
                bytes: BytesMut::new(),
                budget: budget.clone(),
            }),
            limit,
            on_done: None,
        }
    }

    #[test]
    fn copies_share_one_budget_and_give_it_back() {
        let budget = CaptureBudget::new(100);
        let mut first = copying(&budget, 70);
        let mut second = copying(&budget, 1000);
        first.keep(&[1; 60]);
        second.keep(&[2; 60]);
        assert!(
            first.copy.is_some() && second.copy.is_none(),
            "the second copy passed the budget"
        );
        first.keep(&[1; 20]);
        assert!(first.copy.is_none(), "past the item limit");
        // Abandoned copies gave their bytes back.
        assert!(budget.take(100));
    }
}
