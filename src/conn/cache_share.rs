//! The cache's share of memory lent to request heads (SPEC.md §11a). The
//! memory budget sets CACHE_SIZE aside for the cache, which is empty after
//! every start and deploy and often never fills; heads being read may
//! borrow what it does not hold, so a flood of large heads keeps more
//! connections within the same memory. The cache never waits for it: each
//! time it stores, it says what it holds, and heads holding more than is
//! then left for them are closed, oldest first (`Borrower::fit_heads`, the
//! crowd's).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Who borrows: the crowd of connections whose heads are being read.
pub trait Borrower: Send + Sync {
    /// Closes heads until they hold no more than they may now.
    fn fit_heads(&self);
}

pub struct CacheShare {
    /// Bytes of the cache's share heads may borrow (`memory_budget`).
    lendable: usize,
    /// What the cache holds, as weighed after its last store.
    held: AtomicUsize,
    /// The crowd whose heads borrow.
    borrower: OnceLock<Weak<dyn Borrower>>,
}

impl CacheShare {
    pub fn new(lendable: u64) -> Arc<Self> {
        Arc::new(CacheShare {
            lendable: usize::try_from(lendable).unwrap_or(usize::MAX),
            held: AtomicUsize::new(0),
            borrower: OnceLock::new(),
        })
    }

    /// Bytes heads may borrow now.
    pub fn unused(&self) -> usize {
        self.lendable
            .saturating_sub(self.held.load(Ordering::Acquire))
    }

    /// The cache now holds `bytes`: heads past what that leaves them are
    /// closed.
    pub fn cache_holds(&self, bytes: u64) {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        self.held.store(bytes, Ordering::Release);
        if let Some(borrower) = self.borrower.get().and_then(Weak::upgrade) {
            borrower.fit_heads();
        }
    }

    /// Lends to `borrower` (one a process).
    pub fn lend_to(&self, borrower: Weak<dyn Borrower>) {
        let _ = self.borrower.set(borrower);
    }
}
