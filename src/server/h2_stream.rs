//! One HTTP/2 stream: its request through the pipeline, the app's 103
//! Early Hints sent while the answer is prepared, then the answer's head
//! and body within the client's flow-control window; for an extended
//! CONNECT (WebSocket), the stream handed to the tunnel once accepted.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{ready, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body as _;
use tokio::sync::oneshot;

use super::handler::Handler;
use super::stream_head;
use crate::conn::interim::{StreamHints, StreamHintsWaiting};
use crate::http::body::client::{ClientBody, StreamBody};
use crate::http::body::Body;
use crate::http::headers::content_length;
use crate::http::upgrade::{PendingStream, StreamIo};
use crate::pipeline;

pub async fn serve(
    handler: Handler,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let (mut parts, recv) = req.into_parts();
    let head_only = parts.method == Method::HEAD;
    let (hints, mut hints_waiting) = StreamHints::channel();
    parts.extensions.insert(hints);
    let (body, tunnel) = if parts.method == Method::CONNECT {
        let (pending, handed) = PendingStream::new();
        parts.extensions.insert(pending);
        (ClientBody::None, Some((handed, recv)))
    } else {
        let length = content_length(&parts.headers);
        (ClientBody::Http2(StreamBody::new(recv, length)), None)
    };
    let req = Request::from_parts(parts, body);
    // Boxed: the spawned task then holds a pointer, not the pipeline's
    // whole state machine, which would be copied into it.
    let answer = Box::pin(pipeline::handle(handler.app, handler.conn, req));
    let Some(response) = answered(answer, &mut respond, &mut hints_waiting).await else {
        return;
    };
    drop(hints_waiting);

    let (mut parts, body) = response.into_parts();
    let end = stream_head::ready(&mut parts, &body, head_only);
    if let Some((handed, recv)) = tunnel {
        if parts.status.is_success() {
            return open_tunnel(respond, parts, handed, recv);
        }
    }
    match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(send) if !end => send_body(body, send).await,
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 answer not sent");
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }
}

/// The pipeline's answer, with the hints that come meanwhile sent ahead of
/// it; `None` if the client reset the stream first (the request is then
/// dropped, as the client no longer waits for it).
async fn answered(
    answer: impl Future<Output = Response<Body>>,
    respond: &mut h2::server::SendResponse<Bytes>,
    hints: &mut StreamHintsWaiting,
) -> Option<Response<Body>> {
    let mut answer = pin!(answer);
    poll_fn(|cx| {
        while let Poll::Ready(Some(headers)) = hints.poll_next(cx) {
            send_hint(respond, headers);
        }
        if let Poll::Ready(response) = answer.as_mut().poll(cx) {
            // Hints queued just before the answer's head arrived.
            while let Some(headers) = hints.try_next() {
                send_hint(respond, headers);
            }
            return Poll::Ready(Some(response));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

fn send_hint(respond: &mut h2::server::SendResponse<Bytes>, headers: HeaderMap) {
    let mut hint = Response::new(());
    *hint.status_mut() = StatusCode::EARLY_HINTS;
    *hint.headers_mut() = headers;
    if let Err(e) = respond.send_informational(hint) {
        tracing::debug!(error = %e, "103 Early Hints not sent");
    }
}

/// The app accepted the WebSocket: the 200 opens the stream, whose DATA
/// frames carry the tunnel's bytes from then on.
fn open_tunnel(
    mut respond: h2::server::SendResponse<Bytes>,
    mut parts: http::response::Parts,
    handed: oneshot::Sender<StreamIo>,
    recv: h2::RecvStream,
) {
    parts.headers.remove(CONTENT_LENGTH);
    match respond.send_response(Response::from_parts(parts, ()), false) {
        Ok(send) => {
            let _ = handed.send(StreamIo::new(send, recv));
        }
        Err(e) => tracing::debug!(error = %e, "HTTP/2 tunnel not opened"),
    }
}

/// Sends `body` frame by frame. A frame is read only once the client's
/// window has room for a byte of it: h2 holds what does not fit yet, so at
/// most one frame per stream waits in memory beyond the window.
async fn send_body(mut body: Body, mut send: h2::SendStream<Bytes>) {
    loop {
        send.reserve_capacity(1);
        if send.capacity() == 0 {
            let room = poll_fn(|cx| loop {
                match ready!(send.poll_capacity(cx)) {
                    Some(Ok(0)) => continue,
                    Some(Ok(_)) => return Poll::Ready(true),
                    Some(Err(_)) | None => return Poll::Ready(false),
                }
            })
            .await;
            if !room {
                return;
            }
        }
        let next = poll_fn(|cx| {
            if send.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let Some(frame) = next else {
            // The client reset the stream: the rest is dropped.
            return;
        };
        match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 answer's body failed, stream reset");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if send.send_data(data, end).is_err() || end {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                    }
                    return;
                }
            },
        }
    }
}
