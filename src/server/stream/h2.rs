//! An HTTP/2 stream on the h2 crate, as a `ClientStream`: interim
//! responses and the head go out at once (h2 queues them), body data once
//! the client's window has room; the client's RST_STREAM is the
//! cancellation. An extended CONNECT (WebSocket, RFC 8441) hands the
//! stream to the tunnel once the app accepts it.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::response::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use super::super::handler::Handler;
use super::{Abort, AfterHead, ClientStream, Gone};
use crate::http::body::client::{ClientBody, H2Body};
use crate::http::headers::content_length;
use crate::http::upgrade::{PendingStream, StreamIo};

/// Serves one HTTP/2 request stream.
pub async fn serve(
    handler: Handler,
    req: Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
) {
    let (mut parts, recv) = req.into_parts();
    let (body, tunnel) = if parts.method == Method::CONNECT {
        let (pending, handed) = PendingStream::new();
        parts.extensions.insert(pending);
        (ClientBody::None, Some((handed, recv)))
    } else {
        // The h2 crate has refused a Content-Length that is not a number.
        let length = content_length(&parts.headers);
        (ClientBody::Http2(H2Body::new(recv, length)), None)
    };
    let stream = Http2Stream {
        respond,
        send: None,
        ended: false,
        tunnel,
    };
    super::serve(stream, handler, Request::from_parts(parts, body)).await;
}

struct Http2Stream {
    respond: h2::server::SendResponse<Bytes>,
    /// The body's side, once the head has gone.
    send: Option<h2::SendStream<Bytes>>,
    ended: bool,
    /// An extended CONNECT: where the tunnel waits for the stream.
    tunnel: Option<(oneshot::Sender<StreamIo>, h2::RecvStream)>,
}

impl ClientStream for Http2Stream {
    fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.send {
            Some(send) => send.poll_reset(cx).map(|_| ()),
            None => self.respond.poll_reset(cx).map(|_| ()),
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        // Before the body, nothing waits: h2 queues heads.
        let Some(send) = self.send.as_mut().filter(|_| !self.ended) else {
            return Poll::Ready(Ok(()));
        };
        send.reserve_capacity(1);
        if send.capacity() > 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match std::task::ready!(send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(_)) => return Poll::Ready(Ok(())),
                Some(Err(_)) | None => return Poll::Ready(Err(Gone)),
            }
        }
    }

    fn start_interim(&mut self, headers: HeaderMap) -> Result<(), Gone> {
        let mut hint = Response::new(());
        *hint.status_mut() = StatusCode::EARLY_HINTS;
        *hint.headers_mut() = headers;
        // A hint that cannot go is only advice lost.
        if let Err(e) = self.respond.send_informational(hint) {
            tracing::debug!(error = %e, "103 Early Hints not sent");
        }
        Ok(())
    }

    fn start_head(&mut self, mut head: Parts, end: bool) -> Result<AfterHead, Gone> {
        if let Some((handed, recv)) = self.tunnel.take() {
            if head.status.is_success() {
                // The app accepted the WebSocket: the 2xx opens the stream,
                // whose DATA frames carry the tunnel's bytes from then on.
                head.headers.remove(CONTENT_LENGTH);
                let send = self
                    .respond
                    .send_response(Response::from_parts(head, ()), false)
                    .map_err(|e| tracing::debug!(error = %e, "HTTP/2 tunnel not opened"))
                    .map_err(|()| Gone)?;
                let _ = handed.send(StreamIo::new(send, recv));
                return Ok(AfterHead::Handed);
            }
        }
        match self
            .respond
            .send_response(Response::from_parts(head, ()), end)
        {
            Ok(send) => {
                self.ended = end;
                self.send = Some(send);
                Ok(AfterHead::Body)
            }
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/2 answer not sent");
                Err(Gone)
            }
        }
    }

    fn start_data(&mut self, data: Bytes, end: bool) -> Result<(), Gone> {
        let send = self.send.as_mut().ok_or(Gone)?;
        self.ended = end;
        send.send_data(data, end).map_err(|_| Gone)
    }

    fn start_trailers(&mut self, trailers: HeaderMap) -> Result<(), Gone> {
        let send = self.send.as_mut().ok_or(Gone)?;
        self.ended = true;
        send.send_trailers(trailers).map_err(|_| Gone)
    }

    fn reset(&mut self, why: Abort) {
        let reason = match why {
            Abort::Failed => h2::Reason::INTERNAL_ERROR,
            Abort::GaveUp => h2::Reason::CANCEL,
        };
        match &mut self.send {
            Some(send) => send.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }
}
