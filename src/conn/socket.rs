//! A client connection's socket with thrust's timeouts:
//! - idle: no request in flight and nothing received for HTTP_IDLE_TIMEOUT;
//! - read: a request head started but not finished within HTTP_READ_TIMEOUT
//!   (the body's deadline is kept by `pipeline::request_body`);
//! - write: a write that makes no progress for HTTP_WRITE_TIMEOUT, so a long
//!   download or event stream lives as long as the client keeps reading.
//!
//! Upgraded connections (WebSocket) keep only the write timeout.
//!
//! It also writes the app's 103 Early Hints to HTTP/1.1 clients between
//! hyper's messages (see `interim`).
//!
//! A plain HTTP/1 connection may also be parked once it has idled for a
//! while (see `parking`): this I/O asks for it and, while parking, does not
//! shut the socket down when hyper lets go of it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::conn::state::ConnState;
use crate::conn::zero_copy::{self, SendFile};
use crate::http::head_scan::HeadScanner;

#[derive(Clone, Copy)]
pub struct Timeouts {
    pub idle: Option<Duration>,
    pub read: Option<Duration>,
    pub write: Option<Duration>,
}

impl Timeouts {
    /// When a connection idle since `since` is closed (HTTP_IDLE_TIMEOUT),
    /// if ever.
    fn idle_deadline(&self, since: Instant) -> Option<Instant> {
        self.idle.map(|t| since + t)
    }
}

pub struct ConnIo<S> {
    inner: S,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    seen_completed: u64,
    idle_since: Instant,
    head_started: Option<Instant>,
    read_deadline: Option<Instant>,
    read_timer: Pin<Box<Sleep>>,
    write_deadline: Option<Instant>,
    write_armed: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    scanner: HeadScanner,
    /// Request heads read whole so far: the next one's number.
    heads_read: u64,
    /// After how long idle it is parked: alone, and with a large crowd open.
    park_after: Option<(Duration, Duration)>,
    /// thrust reads a head itself (`server::head_read`): no hyper to park.
    park_paused: bool,
    /// Bytes hyper had read but not used when it let go of the connection.
    replay: Bytes,
    /// An error met reading on after the last replayed bytes (`read_on`),
    /// for the next read.
    deferred_error: Option<io::Error>,
    /// Everything hyper handed over has been written (its last call was a
    /// flush, which it makes only with its buffer empty): a hint may go.
    between_writes: bool,
}

/// A parked connection's I/O (see `parking`): its socket and what carries
/// over to its next request. Its timers, head scanner and the rest are made
/// anew when it wakes, so that while it waits it holds no more than this.
pub struct ParkedIo<S> {
    inner: S,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    seen_completed: u64,
    heads_read: u64,
    idle_since: Instant,
}

impl<S> ParkedIo<S> {
    /// A new connection, waiting for its first bytes.
    pub fn new(inner: S, state: Arc<ConnState>, timeouts: Timeouts) -> Self {
        ParkedIo {
            inner,
            state,
            timeouts,
            seen_completed: 0,
            heads_read: 0,
            idle_since: Instant::now(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// When it is closed for idling (HTTP_IDLE_TIMEOUT), if ever.
    pub fn idle_deadline(&self) -> Option<Instant> {
        self.timeouts.idle_deadline(self.idle_since)
    }

    /// The connection's I/O again, for its next request.
    pub fn wake(self) -> ConnIo<S> {
        let mut io = ConnIo::new(self.inner, self.state, self.timeouts);
        io.seen_completed = self.seen_completed;
        io.heads_read = self.heads_read;
        io.idle_since = self.idle_since;
        io
    }
}

impl<S> ConnIo<S> {
    pub fn new(inner: S, state: Arc<ConnState>, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        ConnIo {
            inner,
            state,
            timeouts,
            seen_completed: 0,
            idle_since: now,
            head_started: None,
            read_deadline: None,
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            write_deadline: None,
            write_armed: None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
            scanner: HeadScanner::default(),
            heads_read: 0,
            park_after: None,
            park_paused: false,
            replay: Bytes::new(),
            deferred_error: None,
            between_writes: true,
        }
    }

    /// Asks for the connection to be parked after it idles for `after`, or
    /// for `in_a_crowd` while a large crowd is open (`Seat::in_a_crowd`).
    pub fn park_after(mut self, after: Duration, in_a_crowd: Duration) -> Self {
        self.park_after = Some((after, in_a_crowd));
        self
    }

    /// Parks the connection: keeps its socket and what the next request
    /// needs to know, lets go of its timers. Only between requests, with
    /// nothing left to read again (hyper let go of it idle).
    pub fn park(self) -> ParkedIo<S> {
        debug_assert!(self.replay.is_empty() && self.head_started.is_none());
        ParkedIo {
            inner: self.inner,
            state: self.state,
            timeouts: self.timeouts,
            seen_completed: self.seen_completed,
            heads_read: self.heads_read,
            idle_since: self.idle_since,
        }
    }

    /// Takes the connection back from a parked hyper connection: the bytes
    /// it had read are read again first.
    pub fn unpark(&mut self, unread: Bytes) {
        self.read_again(unread);
        self.state.clear_park();
    }

    /// Bytes read before this I/O had the connection (to tell its
    /// protocol): scanned as the start of an HTTP/1 head.
    pub fn scan(&mut self, bytes: &[u8]) {
        self.on_bytes_read(bytes);
    }

    /// Request heads read whole so far.
    pub fn heads_read(&self) -> u64 {
        self.heads_read
    }

    /// Bytes are waiting to be read again (`read_again`).
    pub fn replaying(&self) -> bool {
        !self.replay.is_empty()
    }

    /// Whether the connection may be parked when it idles: not while thrust
    /// reads a head itself, with no hyper connection to let go of it.
    pub fn pause_parking(&mut self, paused: bool) {
        self.park_paused = paused;
    }

    /// Bytes already read from the client, to be read again first.
    pub fn read_again(&mut self, bytes: Bytes) {
        // An empty `bytes` may still hold hyper's whole read buffer.
        if !bytes.is_empty() {
            self.replay = bytes;
        }
    }

    /// Notices a finished exchange: idleness and a new request head begin.
    fn observe_completion(&mut self) {
        let completed = self.state.completed();
        if completed != self.seen_completed && self.state.in_flight() == 0 {
            self.seen_completed = completed;
            self.idle_since = Instant::now();
            // A pipelined head already under way is timed from here.
            self.head_started = self.scanner.in_head().then(Instant::now);
        }
    }

    fn current_read_deadline(&self) -> Option<Instant> {
        if self.state.upgraded() || self.state.in_flight() > 0 {
            return None;
        }
        match self.head_started {
            Some(started) if !self.state.multiplexed() => self.timeouts.read.map(|t| started + t),
            _ => self.timeouts.idle_deadline(self.idle_since),
        }
    }

    /// When to ask for parking: only between requests, never before the
    /// first exchange (hyper can let go of a connection only between them).
    fn park_deadline(&self) -> Option<Instant> {
        let (alone, in_a_crowd) = self.park_after.filter(|_| !self.park_paused)?;
        let after = if self.state.seat().in_a_crowd() {
            in_a_crowd
        } else {
            alone
        };
        let between = self.seen_completed > 0
            && self.head_started.is_none()
            && self.scanner.between_requests();
        (between && self.state.in_flight() == 0 && !self.state.upgraded())
            .then(|| self.idle_since + after)
    }

    fn on_bytes_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.state.upgraded() || self.state.multiplexed() {
            return;
        }
        // Only a new request head starts the read clock: body bytes read
        // after an early answer leave the idle clock running.
        let state = &self.state;
        let heads = &mut self.heads_read;
        let head_began = self.scanner.feed(bytes, |head| {
            state.head_read(*heads, head);
            *heads += 1;
        });
        if head_began && self.head_started.is_none() {
            self.head_started = Some(Instant::now());
            if self.state.in_flight() == 0 {
                self.state.seat().waiting_for_head();
            }
        }
    }

    /// Polls the timer for `deadline`. A timer armed for an earlier instant
    /// is left alone and moved on when it fires: a keep-alive connection's
    /// idle deadline moves with every request, and moving the timer each
    /// time would cost a timer-wheel update per request.
    fn expired(
        timer: &mut Pin<Box<Sleep>>,
        armed: &mut Option<Instant>,
        deadline: Instant,
        cx: &mut Context<'_>,
    ) -> bool {
        if armed.is_none_or(|at| at > deadline) {
            timer.as_mut().reset(deadline);
            *armed = Some(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if *armed == Some(deadline) {
            return true;
        }
        timer.as_mut().reset(deadline);
        *armed = Some(deadline);
        timer.as_mut().poll(cx).is_ready()
    }

    /// Writes the 103 Early Hints waiting (see `interim`) if nothing of
    /// hyper's is half-written; drops those whose request's answer has begun
    /// before they could go. Ready once nothing of theirs must come first.
    fn poll_hints(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        S: AsyncWrite + Unpin,
    {
        if !self.state.interim().waiting() {
            return Poll::Ready(Ok(()));
        }
        let state = self.state.clone();
        let interim = state.interim();
        let mut queue = interim.lock();
        if !queue.started() && !self.between_writes {
            if queue.closed() {
                interim.drained(&mut queue);
            }
            return Poll::Ready(Ok(()));
        }
        while !queue.rest().is_empty() {
            let polled = Pin::new(&mut self.inner).poll_write(cx, queue.rest());
            let n = ready!(self.write_progress(polled, cx))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            queue.advance(n);
        }
        interim.drained(&mut queue);
        Poll::Ready(Ok(()))
    }

    /// hyper's bytes from `polled` went out: until its next flush, a hint
    /// would land inside what it is writing.
    fn wrote(&mut self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.between_writes = false;
        }
        polled
    }

    fn write_progress<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                let Some(limit) = self.timeouts.write else {
                    return Poll::Pending;
                };
                let deadline = *self
                    .write_deadline
                    .get_or_insert_with(|| Instant::now() + limit);
                if Self::expired(&mut self.write_timer, &mut self.write_armed, deadline, cx) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading (HTTP_WRITE_TIMEOUT)",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.write_deadline = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            if this.replay.is_empty() {
                // Lets go of the buffer the bytes came in.
                this.replay = Bytes::new();
                this.read_on(cx, buf);
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = this.deferred_error.take() {
            return Poll::Ready(Err(e));
        }
        this.observe_completion();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.on_bytes_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Registered before the in-flight check, so a request that
                // finishes in between still wakes this reader.
                this.state.wake_when_idle(cx.waker());
                this.observe_completion();
                let limit = this.current_read_deadline();
                let park = (this.park_deadline()).filter(|park| limit.is_none_or(|l| *park < l));
                let Some(deadline) = park.or(limit) else {
                    return Poll::Pending;
                };
                if Self::expired(&mut this.read_timer, &mut this.read_deadline, deadline, cx) {
                    if park.is_some() {
                        // The driver takes the connection from hyper; no read is due.
                        this.state.request_park();
                        return Poll::Pending;
                    }
                    let what = if this.head_started.is_some() {
                        "request head not received in time (HTTP_READ_TIMEOUT)"
                    } else {
                        "idle connection (HTTP_IDLE_TIMEOUT)"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> ConnIo<S> {
    /// After the last replayed bytes, reads on from the socket into the
    /// same buffer when a body follows them: the read hyper makes is then
    /// as large as if nothing had been read ahead of it, and an early
    /// answer's unread body is drained (kept alive) as often as without.
    fn read_on(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) {
        if buf.remaining() == 0 || self.scanner.between_requests() {
            return;
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => self.on_bytes_read(&buf.filled()[before..]),
            Poll::Ready(Err(e)) => self.deferred_error = Some(e),
            Poll::Pending => {}
        }
    }
}

impl<S: SendFile> ConnIo<S> {
    /// Sends the file part `stand_in` stands for (see `zero_copy`).
    fn poll_send_file(&self, cx: &mut Context<'_>, stand_in: &[u8]) -> Poll<io::Result<usize>> {
        match self.state.file_slots() {
            Some(slots) => self.inner.poll_send_file(cx, slots, stand_in),
            None => Poll::Ready(Err(io::Error::other(
                "a file stand-in reached a connection that does not send files",
            ))),
        }
    }
}

impl<S: AsyncWrite + SendFile + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_hints(cx))?;
        let polled = if zero_copy::is_stand_in(buf) {
            self.poll_send_file(cx, buf)
        } else {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        };
        let polled = self.write_progress(polled, cx);
        self.wrote(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_hints(cx))?;
        // Bytes before a stand-in go out as they are; a stand-in first in
        // line goes out as its file part.
        let polled = match zero_copy::first_stand_in(bufs) {
            None => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            Some(at) if bufs[..at].iter().all(|b| b.is_empty()) => {
                self.poll_send_file(cx, &bufs[at])
            }
            Some(at) => Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs[..at]),
        };
        let polled = self.write_progress(polled, cx);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes with its buffer empty, also while a request waits
        // for the app: the moment to write hints, and to be woken for them.
        self.between_writes = true;
        self.state.interim().watch(cx.waker());
        ready!(self.poll_hints(cx))?;
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.write_progress(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper letting go of a connection being parked: the socket stays open.
        if self.state.park_requested() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
