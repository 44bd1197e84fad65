//! Which copy of the app new requests go to. `thrust restart` prepares a
//! new copy (connections to it are opened ahead, see `upstream`), then
//! switches to it; connections to the old copy are counted so it is stopped
//! only once the requests it was serving are done.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Worker;

/// One copy of the app: where it listens and how many connections thrust
/// has open to it.
pub struct AppCopy {
    pub address: Worker,
    generation: u64,
    open_connections: AtomicUsize,
}

impl AppCopy {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Connections thrust holds open to this copy, idle ones in the pools included.
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Acquire)
    }

    /// Counts a connection about to be opened to this copy until the
    /// returned guard is dropped.
    pub fn count_connection(self: &Arc<Self>) -> OpenConnection {
        self.open_connections.fetch_add(1, Ordering::AcqRel);
        OpenConnection(self.clone())
    }
}

/// Held by an app connection's task for as long as the connection lives.
pub struct OpenConnection(Arc<AppCopy>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The copy new requests go to. The generation is read on every request
/// (one atomic load); the copy itself only when a connection is opened.
pub struct AppTarget {
    generation: AtomicU64,
    current: Mutex<Arc<AppCopy>>,
    /// The last generation handed out; a failed restart's is never reused.
    issued: AtomicU64,
}

impl AppTarget {
    pub fn new(address: Worker) -> Arc<Self> {
        Arc::new(AppTarget {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(AppCopy {
                address,
                generation: 0,
                open_connections: AtomicUsize::new(0),
            })),
            issued: AtomicU64::new(0),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<AppCopy> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current copy, with a connection about to be opened to it counted
    /// until the returned guard is dropped. Counted under the lock a switch
    /// takes: once `switch_to` returns, every connection to the copy it
    /// replaced is in that copy's count.
    pub fn open_connection(&self) -> (Arc<AppCopy>, OpenConnection) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let open = current.count_connection();
        (current.clone(), open)
    }

    /// A copy at `address` that is not sent requests until `switch_to`.
    pub fn prepare(&self, address: Worker) -> Arc<AppCopy> {
        Arc::new(AppCopy {
            address,
            generation: self.issued.fetch_add(1, Ordering::AcqRel) + 1,
            open_connections: AtomicUsize::new(0),
        })
    }

    /// Sends new connections to `copy`; returns the copy they went to before.
    pub fn switch_to(&self, copy: Arc<AppCopy>) -> Arc<AppCopy> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.store(copy.generation, Ordering::Release);
        std::mem::replace(&mut *current, copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_moves_new_connections_and_counts_the_old_ones() {
        let target = AppTarget::new(Worker::Port(3000));
        let (_, held) = target.open_connection();
        let next = target.prepare(Worker::Port(4000));
        assert_eq!(target.generation(), 0);
        let previous = target.switch_to(next);
        assert_eq!(previous.address, Worker::Port(3000));
        assert_eq!(target.current().address, Worker::Port(4000));
        assert_eq!(target.generation(), 1);
        assert_eq!(previous.open_connections(), 1);
        drop(held);
        assert_eq!(previous.open_connections(), 0);
    }
}
