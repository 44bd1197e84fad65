//! One HTTP/3 request stream: its head read (within `opening`), the
//! request through the pipeline with its body read from the stream, the
//! app's 103 Early Hints sent while the answer is prepared, then the
//! answer's head and body, a frame at a time as QUIC's flow control lets
//! them go.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use h3::error::Code;
use h3::server::{RequestResolver, RequestStream};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body as _;

use super::handler::Handler;
use super::stream_head;
use crate::conn::interim::{StreamHints, StreamHintsWaiting};
use crate::http::body::client::{ClientBody, QuicBody};
use crate::http::body::Body;
use crate::http::headers::content_length;
use crate::pipeline;

type Resolver = RequestResolver<h3_quinn::Connection, Bytes>;
type SendStream = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

pub async fn serve(handler: Handler, resolver: Resolver, opening: Duration) {
    let (req, stream) = match tokio::time::timeout(opening, resolver.resolve_request()).await {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(e)) => return tracing::debug!(error = %e, "HTTP/3 request head not read"),
        Err(_) => return tracing::debug!("HTTP/3 request head timed out"),
    };
    let (mut send, recv) = stream.split();
    let (mut parts, ()) = req.into_parts();
    let head_only = parts.method == Method::HEAD;
    let (hints, hints_waiting) = StreamHints::channel();
    parts.extensions.insert(hints);
    let length = content_length(&parts.headers);
    let body = ClientBody::Http3(QuicBody::new(recv, length));
    let req = Request::from_parts(parts, body);
    // Boxed: the spawned task then holds a pointer, not the pipeline's
    // whole state machine.
    let answer = Box::pin(pipeline::handle(handler.app, handler.conn, req));
    let response = answered(answer, &mut send, hints_waiting).await;

    let (mut parts, body) = response.into_parts();
    let end = stream_head::ready(&mut parts, &body, head_only);
    if let Err(e) = send.send_response(Response::from_parts(parts, ())).await {
        return tracing::debug!(error = %e, "HTTP/3 answer not sent");
    }
    if !end {
        send_body(body, &mut send).await;
    } else if let Err(e) = send.finish().await {
        tracing::debug!(error = %e, "HTTP/3 answer not finished");
    }
}

/// The pipeline's answer, with the hints that come meanwhile sent ahead of
/// it as 103 responses.
async fn answered(
    mut answer: Pin<Box<impl Future<Output = Response<Body>>>>,
    send: &mut SendStream,
    mut hints: StreamHintsWaiting,
) -> Response<Body> {
    loop {
        tokio::select! {
            response = &mut answer => {
                // Hints queued just before the answer's head arrived.
                while let Some(headers) = hints.try_next() {
                    send_hint(send, headers).await;
                }
                return response;
            }
            Some(headers) = poll_fn(|cx| hints.poll_next(cx)) => send_hint(send, headers).await,
        }
    }
}

async fn send_hint(send: &mut SendStream, headers: HeaderMap) {
    let mut hint = Response::new(());
    *hint.status_mut() = StatusCode::EARLY_HINTS;
    *hint.headers_mut() = headers;
    if let Err(e) = send.send_response(hint).await {
        tracing::debug!(error = %e, "103 Early Hints not sent");
    }
}

/// Sends `body` frame by frame; each send waits until QUIC has taken the
/// frame before the next is read, so one frame per stream waits in memory.
async fn send_body(mut body: Body, send: &mut SendStream) {
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let sent = match frame {
            None => send.finish().await,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/3 answer's body failed, stream reset");
                send.stop_stream(Code::H3_INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => send.send_data(data).await,
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => send.send_trailers(trailers).await,
                    Err(_) => continue,
                },
            },
        };
        if let Err(e) = sent {
            // The client reset the stream or the connection ended: the rest
            // is dropped.
            return tracing::debug!(error = %e, "HTTP/3 answer cut short");
        }
        if body.is_end_stream() {
            if let Err(e) = send.finish().await {
                tracing::debug!(error = %e, "HTTP/3 answer not finished");
            }
            return;
        }
    }
}
