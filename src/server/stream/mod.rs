//! One request stream of a multiplexed connection, served the same way on
//! every protocol that has streams (HTTP/2 on the h2 crate, HTTP/3 on the
//! h3 crate): the request through the pipeline, raced against the client
//! going away; the app's 103 Early Hints sent while the answer is
//! prepared, never holding it up; then the answer's head and body, each
//! message sent only once the stream has taken the one before, within
//! HTTP_WRITE_TIMEOUT.
//!
//! A protocol plugs in by implementing `ClientStream` (`h2.rs`, `h3.rs`)
//! and calling `serve`; everything else here is shared. HTTP/1.1 is served
//! by hyper (`handler.rs`), which gives the pipeline the same request and
//! takes the same answer.

pub mod h2;
pub mod h3;
mod head;
mod write_deadline;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderMap, Method, Request};
use http_body::Body as _;

use super::handler::Handler;
use crate::conn::interim::{StreamHints, StreamHintsWaiting};
use crate::http::body::client::ClientBody;
use crate::http::body::Body;
use crate::pipeline;
use write_deadline::WriteDeadline;

/// The stream takes nothing more: the client reset it, its connection
/// ended, or a send failed.
#[derive(Debug)]
pub struct Gone;

/// What follows a head that was sent.
pub enum AfterHead {
    /// The body, if the head did not end the stream.
    Body,
    /// The stream now belongs to a tunnel (an accepted WebSocket).
    Handed,
}

/// Why a stream is ended early.
#[derive(Clone, Copy)]
pub enum Abort {
    /// The answer's source failed part-way.
    Failed,
    /// The client stopped taking the answer (HTTP_WRITE_TIMEOUT), or is gone.
    GaveUp,
}

/// What a protocol's request stream offers `serve`. Sends are started one
/// at a time: `poll_ready` first, then one `start_*`.
pub trait ClientStream {
    /// Ready once the client no longer waits for the answer: it reset the
    /// stream, or its connection ended.
    fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Ready once the message started last has been taken and another may
    /// start; after the head, once the client's window has room for a byte
    /// of the body.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>>;
    /// Starts a 103 Early Hints response.
    fn start_interim(&mut self, headers: HeaderMap) -> Result<(), Gone>;
    /// Starts the answer's head; `end` when nothing follows it.
    fn start_head(&mut self, head: Parts, end: bool) -> Result<AfterHead, Gone>;
    /// Starts a piece of the body; `end` when it is the last.
    fn start_data(&mut self, data: Bytes, end: bool) -> Result<(), Gone>;
    /// Starts the trailers, which end the stream.
    fn start_trailers(&mut self, trailers: HeaderMap) -> Result<(), Gone>;
    /// Ends the stream at once: the client sees it reset, never a short
    /// answer that looks whole.
    fn reset(&mut self, why: Abort);
}

/// Serves one request on `stream` to its end. The pipeline's work is
/// dropped as soon as the client goes away, so the app's request is
/// cancelled with it.
pub async fn serve<S: ClientStream>(mut stream: S, handler: Handler, mut req: Request<ClientBody>) {
    let head_only = req.method() == Method::HEAD;
    let (hints, mut waiting) = StreamHints::channel();
    req.extensions_mut().insert(hints);
    let mut deadline = WriteDeadline::new(handler.app.config.write_timeout);
    // Boxed: the spawned task then holds a pointer, not the pipeline's
    // whole state machine.
    let mut answer = Box::pin(pipeline::handle(handler.app, handler.conn, req));
    // The client's leaving is looked at only before waiting: it costs a
    // lock in h2 and quinn, and a send to a stream that is gone fails anyway.
    let answered = poll_fn(|cx| {
        if let Poll::Ready(Err(gone)) = send_hints(&mut stream, &mut deadline, &mut waiting, cx) {
            return Poll::Ready(Err(gone));
        }
        if let Poll::Ready(response) = answer.as_mut().poll(cx) {
            return Poll::Ready(Ok(response));
        }
        match stream.poll_cancelled(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Gone)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    drop(answer);
    let Ok(response) = answered else {
        return stream.reset(Abort::GaveUp);
    };
    // Hints queued just before the answer's head arrived.
    while let Some(headers) = waiting.try_next() {
        if ready(&mut stream, &mut deadline).await.is_err()
            || stream.start_interim(headers).is_err()
        {
            return stream.reset(Abort::GaveUp);
        }
    }
    drop(waiting);

    let (mut parts, body) = response.into_parts();
    let end = head::ready(&mut parts, &body, head_only);
    if ready(&mut stream, &mut deadline).await.is_err() {
        return stream.reset(Abort::GaveUp);
    }
    match stream.start_head(parts, end) {
        Ok(AfterHead::Handed) => {}
        Ok(AfterHead::Body) if !end => send_body(stream, deadline, body).await,
        Ok(AfterHead::Body) => finish(stream, deadline).await,
        Err(Gone) => stream.reset(Abort::GaveUp),
    }
}

/// Starts the hints that have come, as the stream takes them; pending
/// while one is on its way or none waits.
fn send_hints<S: ClientStream>(
    stream: &mut S,
    deadline: &mut WriteDeadline,
    waiting: &mut StreamHintsWaiting,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Gone>> {
    loop {
        std::task::ready!(deadline.poll_ready(stream, cx))?;
        let headers = std::task::ready!(waiting.poll_next(cx));
        stream.start_interim(headers)?;
    }
}

/// Waits until the stream takes another message, within the write
/// deadline, and while the client is still there.
async fn ready<S: ClientStream>(stream: &mut S, deadline: &mut WriteDeadline) -> Result<(), Gone> {
    poll_fn(|cx| match deadline.poll_ready(stream, cx) {
        Poll::Pending if stream.poll_cancelled(cx).is_ready() => Poll::Ready(Err(Gone)),
        taken => taken,
    })
    .await
}

/// What comes next while the body is sent.
enum Step {
    Frame(Option<Result<http_body::Frame<Bytes>, crate::http::body::BoxError>>),
    Gone,
}

/// Sends `body`: a frame is read only once the stream has room for it, so
/// at most one frame per stream waits in memory beyond the client's window.
async fn send_body<S: ClientStream>(mut stream: S, mut deadline: WriteDeadline, mut body: Body) {
    loop {
        let step = poll_fn(|cx| {
            let next = match deadline.poll_ready(&mut stream, cx) {
                Poll::Ready(Err(Gone)) => return Poll::Ready(Step::Gone),
                Poll::Ready(Ok(())) => Pin::new(&mut body).poll_frame(cx).map(Step::Frame),
                Poll::Pending => Poll::Pending,
            };
            match next {
                Poll::Pending if stream.poll_cancelled(cx).is_ready() => Poll::Ready(Step::Gone),
                next => next,
            }
        })
        .await;
        let (started, last) = match step {
            // The client left or stopped reading: the rest is dropped.
            Step::Gone => return stream.reset(Abort::GaveUp),
            Step::Frame(None) => (stream.start_data(Bytes::new(), true), true),
            Step::Frame(Some(Err(e))) => {
                tracing::debug!(error = %e, "An answer's body failed, its stream is reset");
                return stream.reset(Abort::Failed);
            }
            Step::Frame(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if data.is_empty() && !end {
                        continue;
                    }
                    (stream.start_data(data, end), end)
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => (stream.start_trailers(trailers), true),
                    Err(_) => continue,
                },
            },
        };
        if started.is_err() {
            return stream.reset(Abort::GaveUp);
        }
        if last {
            return finish(stream, deadline).await;
        }
    }
}

/// Waits until the stream has taken the last message.
async fn finish<S: ClientStream>(mut stream: S, mut deadline: WriteDeadline) {
    if ready(&mut stream, &mut deadline).await.is_err() {
        stream.reset(Abort::GaveUp);
    }
}
