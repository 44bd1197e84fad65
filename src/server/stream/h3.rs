//! An HTTP/3 request stream on the h3 crate, as a `ClientStream`. h3's
//! sends are async functions that must run to their end (one dropped
//! half-way leaves its frame half-written and breaks the next send), so
//! each runs as a future that owns the stream and gives it back when done;
//! a reset stops the one in flight from inside. The cancellation is the
//! QUIC connection ending; a client's STOP_SENDING shows as the next send
//! failing (h3 exposes no signal before that).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h3::error::{Code, StreamError};
use h3::server::{RequestResolver, RequestStream};
use http::response::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use tokio_util::sync::ReusableBoxFuture;

use super::super::handler::Handler;
use super::{Abort, AfterHead, ClientStream, Gone};
use crate::http::body::client::{ClientBody, H3Body};
use crate::http::headers::declared_length;

type Resolver = RequestResolver<h3_quinn::Connection, Bytes>;
type SendStream = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type Sent = (SendStream, Result<(), StreamError>);

/// Serves one request stream: its head read within `opening`, then as
/// every stream is served. A request whose Content-Length is not a number
/// gets its 400 from the pipeline, with no body read.
pub async fn serve(
    handler: Handler,
    resolver: Resolver,
    connection: quinn::Connection,
    opening: Duration,
) {
    let (req, stream) = match tokio::time::timeout(opening, resolver.resolve_request()).await {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(e)) => return tracing::debug!(error = %e, "HTTP/3 request head not read"),
        Err(_) => return tracing::debug!("HTTP/3 request head timed out"),
    };
    let (send, recv) = stream.split();
    let (parts, ()) = req.into_parts();
    let body = match declared_length(&parts.headers) {
        Ok(length) => ClientBody::Http3(H3Body::new(recv, length)),
        Err(_) => ClientBody::None,
    };
    let closed = Box::pin(async move {
        connection.closed().await;
    });
    let stream = Http3Stream {
        idle: Some(send),
        sending: None,
        abort: Arc::new(AtomicBool::new(false)),
        closed,
    };
    super::serve(stream, handler, Request::from_parts(parts, body)).await;
}

struct Http3Stream {
    /// The stream, when no send is in flight.
    idle: Option<SendStream>,
    /// The send in flight, which holds the stream meanwhile.
    sending: Option<ReusableBoxFuture<'static, Sent>>,
    /// Tells the send in flight to reset the stream and stop.
    abort: Arc<AtomicBool>,
    closed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// One message for the stream.
enum Message {
    Interim(Response<()>),
    Head(Response<()>, bool),
    Data(Bytes, bool),
    Trailers(HeaderMap),
}

impl Message {
    async fn send(self, stream: &mut SendStream) -> Result<(), StreamError> {
        let end = match self {
            Message::Interim(hint) => return stream.send_response(hint).await,
            Message::Head(head, end) => {
                stream.send_response(head).await?;
                end
            }
            Message::Data(data, end) => {
                if !data.is_empty() {
                    stream.send_data(data).await?;
                }
                end
            }
            Message::Trailers(trailers) => {
                stream.send_trailers(trailers).await?;
                true
            }
        };
        if end {
            stream.finish().await?;
        }
        Ok(())
    }
}

/// Sends `message` on `stream`, unless told to stop first: then the
/// stream is reset where it stands.
async fn send(mut stream: SendStream, message: Message, abort: Arc<AtomicBool>) -> Sent {
    let stopped = {
        let mut sending = pin!(message.send(&mut stream));
        poll_fn(|cx| {
            if abort.load(Ordering::Relaxed) {
                return Poll::Ready(None);
            }
            sending.as_mut().poll(cx).map(Some)
        })
        .await
    };
    match stopped {
        Some(result) => (stream, result),
        None => {
            stream.stop_stream(Code::H3_REQUEST_CANCELLED);
            (stream, Ok(()))
        }
    }
}

impl Http3Stream {
    fn start(&mut self, message: Message) -> Result<(), Gone> {
        let stream = self.idle.take().ok_or(Gone)?;
        let future = send(stream, message, self.abort.clone());
        match &mut self.sending {
            Some(sending) => sending.set(future),
            None => self.sending = Some(ReusableBoxFuture::new(future)),
        }
        Ok(())
    }
}

impl ClientStream for Http3Stream {
    fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.closed.as_mut().poll(cx)
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        if self.idle.is_none() {
            let Some(sending) = &mut self.sending else {
                return Poll::Ready(Err(Gone));
            };
            let (stream, result) = std::task::ready!(sending.poll(cx));
            self.idle = Some(stream);
            if let Err(e) = result {
                // The client stopped the stream or the connection ended.
                tracing::debug!(error = %e, "HTTP/3 answer cut short");
                return Poll::Ready(Err(Gone));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn start_interim(&mut self, headers: HeaderMap) -> Result<(), Gone> {
        let mut hint = Response::new(());
        *hint.status_mut() = StatusCode::EARLY_HINTS;
        *hint.headers_mut() = headers;
        self.start(Message::Interim(hint))
    }

    fn start_head(&mut self, head: Parts, end: bool) -> Result<AfterHead, Gone> {
        self.start(Message::Head(Response::from_parts(head, ()), end))?;
        Ok(AfterHead::Body)
    }

    fn start_data(&mut self, data: Bytes, end: bool) -> Result<(), Gone> {
        self.start(Message::Data(data, end))
    }

    fn start_trailers(&mut self, trailers: HeaderMap) -> Result<(), Gone> {
        self.start(Message::Trailers(trailers))
    }

    fn reset(&mut self, why: Abort) {
        let code = match why {
            Abort::Failed => Code::H3_INTERNAL_ERROR,
            Abort::GaveUp => Code::H3_REQUEST_CANCELLED,
        };
        if let Some(stream) = &mut self.idle {
            return stream.stop_stream(code);
        }
        // A send is in flight: it resets the stream at its next poll, made
        // here, so that dropping it never ends the answer as if whole.
        self.abort.store(true, Ordering::Relaxed);
        if let Some(sending) = &mut self.sending {
            let _ = sending.poll(&mut Context::from_waker(Waker::noop()));
        }
    }
}
