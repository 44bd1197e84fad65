//! 103 Early Hints waiting to be written to the client.
//!
//! HTTP/1.1: hyper's server writes no informational responses, so the
//! app's hints wait in the connection's `Interim` and the socket wrapper
//! (`socket::ConnIo`) writes them itself, only at a point where everything
//! hyper handed it before has been written: hyper flushes the socket only
//! with its own buffer empty, so a hint never lands inside another
//! message. A hint that could not start before its request's answer began
//! is dropped — hints are advice, the answer must stay whole.
//!
//! HTTP/2: each stream's hints go to the task that owns the stream
//! (`StreamHints`), which sends them as informational HEADERS frames.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;
use http::HeaderMap;

/// Most bytes of hints waiting for one request; more are dropped, so a
/// client that does not read cannot make thrust hold more.
pub const MOST_WAITING: usize = 16 * 1024;

/// One HTTP/1 connection's hints.
#[derive(Default)]
pub struct Interim {
    /// Bytes are queued: spares the lock on every write.
    waiting: AtomicBool,
    /// A request that may pass hints is in flight: only then does the
    /// socket's writer leave its waker here.
    armed: AtomicBool,
    waker: AtomicWaker,
    queue: Mutex<Queue>,
}

/// The hints' bytes, how many of them are written, and whether the request
/// they belong to still takes more.
#[derive(Default)]
pub struct Queue {
    bytes: Vec<u8>,
    written: usize,
    open: bool,
}

impl Interim {
    /// A request that may pass hints begins.
    pub fn open(&self) {
        self.lock().open = true;
        self.armed.store(true, Ordering::Release);
    }

    /// The request's answer has arrived: no more hints for it. What is
    /// queued is still written, if it can go before the answer.
    pub fn close(&self) {
        self.lock().open = false;
        self.armed.store(false, Ordering::Release);
    }

    /// Queues one encoded 103 and wakes the connection to write it; false
    /// when it is refused (the request's answer came, or too much waits).
    pub fn push(&self, message: &[u8]) -> bool {
        let mut queue = self.lock();
        if !queue.open || queue.bytes.len() - queue.written + message.len() > MOST_WAITING {
            return false;
        }
        queue.bytes.extend_from_slice(message);
        self.waiting.store(true, Ordering::Release);
        drop(queue);
        self.waker.wake();
        true
    }

    /// The socket's writer, about to wait: woken when a hint is queued.
    pub fn watch(&self, waker: &Waker) {
        if self.armed.load(Ordering::Acquire) {
            self.waker.register(waker);
        }
    }

    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Everything queued is written or dropped.
    pub fn drained(&self, queue: &mut Queue) {
        queue.bytes.clear();
        queue.written = 0;
        self.waiting.store(false, Ordering::Release);
    }
}

impl Queue {
    /// Part of a hint is on the wire: the rest must follow before anything.
    pub fn started(&self) -> bool {
        self.written > 0
    }

    /// Its request is answered: an unstarted hint has missed its moment.
    pub fn closed(&self) -> bool {
        !self.open
    }

    /// What is left to write.
    pub fn rest(&self) -> &[u8] {
        &self.bytes[self.written..]
    }

    pub fn advance(&mut self, n: usize) {
        self.written += n;
    }
}

/// Hints on their way to one HTTP/2 or HTTP/3 stream's task; at most
/// `STREAM_HINTS` wait, more are dropped. A queue of its own rather than a
/// tokio channel: every stream makes one, almost none carries a hint, and
/// a channel's first block (room for 32 header maps) cost each stream a
/// 3 KiB allocation.
#[derive(Clone)]
pub struct StreamHints(Arc<StreamQueue>);

pub const STREAM_HINTS: usize = 8;

struct StreamQueue {
    /// Hints are queued: spares the stream's task the lock each time it is
    /// polled.
    waiting: AtomicBool,
    queue: Mutex<Queued>,
    waker: AtomicWaker,
}

struct Queued {
    hints: VecDeque<HeaderMap>,
    /// The stream's answer began: no more hints for it.
    closed: bool,
}

impl StreamQueue {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StreamHints {
    pub fn channel() -> (StreamHints, StreamHintsWaiting) {
        let shared = Arc::new(StreamQueue {
            waiting: AtomicBool::new(false),
            queue: Mutex::new(Queued {
                hints: VecDeque::new(),
                closed: false,
            }),
            waker: AtomicWaker::new(),
        });
        let waiting = StreamHintsWaiting {
            shared: shared.clone(),
            room: MOST_WAITING,
        };
        (StreamHints(shared), waiting)
    }

    /// False when the hint is dropped (too many wait, or the answer began).
    pub fn push(&self, headers: HeaderMap) -> bool {
        let mut queued = self.0.lock();
        if queued.closed || queued.hints.len() >= STREAM_HINTS {
            return false;
        }
        queued.hints.push_back(headers);
        self.0.waiting.store(true, Ordering::Release);
        drop(queued);
        self.0.waker.wake();
        true
    }
}

/// The stream task's side: the hints to send, at most `MOST_WAITING` bytes
/// of them per stream. h2 holds HEADERS frames for a client that does not
/// read without a limit of its own, so a stream's hints are bounded as an
/// HTTP/1 request's are; one that does not fit is dropped. Dropped when the
/// answer begins, which closes the queue.
pub struct StreamHintsWaiting {
    shared: Arc<StreamQueue>,
    room: usize,
}

impl StreamHintsWaiting {
    /// The next hint; pending (woken when one comes) while none waits.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<HeaderMap> {
        if let Some(headers) = self.try_next() {
            return Poll::Ready(headers);
        }
        self.shared.waker.register(cx.waker());
        // One queued between the look and the registration.
        match self.try_next() {
            Some(headers) => Poll::Ready(headers),
            None => Poll::Pending,
        }
    }

    /// A hint already queued, without waiting.
    pub fn try_next(&mut self) -> Option<HeaderMap> {
        if !self.shared.waiting.load(Ordering::Acquire) {
            return None;
        }
        let mut queued = self.shared.lock();
        while let Some(headers) = queued.hints.pop_front() {
            if let Some(headers) = admit(&mut self.room, headers) {
                return Some(headers);
            }
        }
        self.shared.waiting.store(false, Ordering::Release);
        None
    }
}

/// `headers` if they fit in the stream's `room` for hints (which they
/// then take), else None.
fn admit(room: &mut usize, headers: HeaderMap) -> Option<HeaderMap> {
    // A header field's size as HTTP/2 counts it (RFC 9113 §6.5.2).
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if size > *room {
        dropped();
        return None;
    }
    *room -= size;
    Some(headers)
}

impl Drop for StreamHintsWaiting {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
    }
}

/// Says a hint was dropped (with DEBUG on).
pub fn dropped() {
    tracing::debug!("103 Early Hints dropped: the answer had begun or too many waited");
}

/// Encodes a 103 for an HTTP/1.1 client.
pub fn http1_message(headers: &HeaderMap) -> Vec<u8> {
    let mut message = Vec::with_capacity(64 + headers.len() * 64);
    message.extend_from_slice(b"HTTP/1.1 103 Early Hints\r\n");
    for (name, value) in headers {
        message.extend_from_slice(name.as_str().as_bytes());
        message.extend_from_slice(b": ");
        message.extend_from_slice(value.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hints_are_taken_only_while_their_request_waits_and_within_the_bound() {
        let interim = Interim::default();
        assert!(!interim.push(b"early"), "no request open");
        interim.open();
        assert!(interim.push(b"HTTP/1.1 103 Early Hints\r\n\r\n"));
        assert!(interim.waiting());
        assert!(!interim.push(&vec![b'x'; MOST_WAITING]), "over the bound");
        interim.close();
        assert!(!interim.push(b"late"), "answer already here");
        let mut queue = interim.lock();
        assert!(queue.closed() && !queue.started());
        assert_eq!(queue.rest(), b"HTTP/1.1 103 Early Hints\r\n\r\n");
        interim.drained(&mut queue);
        drop(queue);
        assert!(!interim.waiting());
    }

    #[test]
    fn a_streams_hints_stop_at_the_bound() {
        let (hints, mut waiting) = StreamHints::channel();
        let mut big = HeaderMap::new();
        let value = HeaderValue::from_str(&"x".repeat(MOST_WAITING / 2)).unwrap();
        big.insert("link", value);
        for _ in 0..3 {
            assert!(hints.push(big.clone()));
        }
        // Each is a little over half the room: the first fits, the others
        // are dropped.
        assert!(waiting.try_next().is_some());
        assert!(waiting.try_next().is_none());
        // Room is per stream: a small hint still fits after them.
        let mut small = HeaderMap::new();
        small.insert("link", HeaderValue::from_static("</a.css>; rel=preload"));
        assert!(hints.push(small));
        assert!(waiting.try_next().is_some());
    }

    #[test]
    fn a_streams_hints_wake_its_task_and_stop_once_its_answer_begins() {
        let (hints, mut waiting) = StreamHints::channel();
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(waiting.poll_next(&mut cx).is_pending());
        let mut link = HeaderMap::new();
        link.insert("link", HeaderValue::from_static("</a.css>; rel=preload"));
        assert!(hints.push(link.clone()));
        assert!(woken.0.load(Ordering::Acquire), "the task is woken");
        assert!(waiting.poll_next(&mut cx).is_ready());
        for _ in 0..STREAM_HINTS {
            assert!(hints.push(link.clone()));
        }
        assert!(!hints.push(link.clone()), "more than STREAM_HINTS wait");
        drop(waiting);
        let (hints, waiting) = StreamHints::channel();
        drop(waiting);
        assert!(!hints.push(link), "the answer began");
    }

    #[derive(Default)]
    struct Woken(AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::Release);
        }
    }

    #[test]
    fn an_http1_hint_carries_every_header_line() {
        let mut headers = HeaderMap::new();
        let link = "</a.css>; rel=preload; as=style";
        headers.append("link", HeaderValue::from_static(link));
        headers.append("link", HeaderValue::from_static("</b.js>; rel=preload"));
        assert_eq!(
            http1_message(&headers),
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload; as=style\r\nlink: </b.js>; rel=preload\r\n\r\n"
        );
    }
}
