//! A miss's body copied while it streams to the first client, to be stored
//! once complete. Each copy is bounded by MAX_CACHE_ITEM_SIZE, and all the
//! copies under way together by a budget (`CaptureBudget`): a thousand slow
//! clients each reading a large storable miss must not hold a thousand
//! copies. A copy that would pass either bound is abandoned; the response
//! itself goes on untouched.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use pin_project_lite::pin_project;

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

pin_project! {
    /// A body passed through unchanged while a bounded copy is kept.
    pub struct Capture<F> {
        #[pin]
        inner: Body,
        copy: Option<Copy>,
        limit: u64,
        on_complete: Option<F>,
    }
}

impl<F: FnOnce(Bytes)> Capture<F> {
    pub fn new(inner: Body, limit: u64, budget: CaptureBudget, on_complete: F) -> Self {
        Capture {
            inner,
            copy: Some(Copy {
                bytes: BytesMut::new(),
                budget,
            }),
            limit,
            on_complete: Some(on_complete),
        }
    }
}

/// Adds `data` to the copy, or abandons the copy when it would pass the
/// item limit or the shared budget.
fn keep(copy: &mut Option<Copy>, limit: u64, data: &[u8]) {
    let Some(held) = copy.as_mut() else {
        return;
    };
    let grown = (held.bytes.len() + data.len()) as u64;
    if grown > limit || !held.budget.take(data.len() as u64) {
        *copy = None;
        return;
    }
    held.bytes.extend_from_slice(data);
}

impl<F: FnOnce(Bytes)> HttpBody for Capture<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    keep(this.copy, *this.limit, data);
                }
                // A body with a known length is not polled past its last
                // byte, so completion is noticed here rather than at the end.
                if this.inner.is_end_stream() {
                    complete(this.copy, this.on_complete);
                }
            }
            Poll::Ready(None) => complete(this.copy, this.on_complete),
            Poll::Ready(Some(Err(_))) => *this.copy = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Hands the copied body over, once; its budget is free again (what is
/// stored is bounded by CACHE_SIZE).
fn complete<F: FnOnce(Bytes)>(copy: &mut Option<Copy>, on_complete: &mut Option<F>) {
    if let (Some(mut held), Some(done)) = (copy.take(), on_complete.take()) {
        let bytes = std::mem::take(&mut held.bytes).freeze();
        held.budget.give_back(bytes.len() as u64);
        drop(held);
        done(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_one_budget_and_give_it_back() {
        let budget = CaptureBudget::new(100);
        let mut first = Some(Copy {
            bytes: BytesMut::new(),
            budget: budget.clone(),
        });
        let mut second = Some(Copy {
            bytes: BytesMut::new(),
            budget: budget.clone(),
        });
        keep(&mut first, 1000, &[1; 60]);
        keep(&mut second, 1000, &[2; 60]);
        assert!(
            first.is_some() && second.is_none(),
            "the second copy passed the budget"
        );
        keep(&mut first, 70, &[1; 20]);
        assert!(first.is_none(), "past the item limit");
        // Abandoned copies gave their bytes back.
        assert!(budget.take(100));
    }
}
