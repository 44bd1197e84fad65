//! A client's request body as the pipeline reads it: hyper's, for HTTP/1,
//! an HTTP/2 stream's, read from the h2 crate (thrust drives HTTP/2
//! itself, see `server::http2`), or an HTTP/3 stream's, from the h3 crate.
//! Both stream bodies hold their DATA to the Content-Length the head
//! announced the same way (`Announced`).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;

pub enum ClientBody {
    Http1(Incoming),
    Http2(H2Body),
    Http3(H3Body),
    /// No body to read: an HTTP/2 CONNECT, whose stream's bytes belong to
    /// the tunnel, or a request refused for its Content-Length.
    None,
}

/// The bytes a head's Content-Length announced that have not come yet.
/// DATA beyond them, or an end before them, is an error: the body is never
/// passed on other than as announced (RFC 9113 §8.1.1, RFC 9114 §4.1.2).
struct Announced(Option<u64>);

impl Announced {
    fn take(&mut self, n: usize) -> Result<(), BoxError> {
        if let Some(left) = &mut self.0 {
            *left = left
                .checked_sub(n as u64)
                .ok_or("request body longer than its Content-Length")?;
        }
        Ok(())
    }

    fn end(&self) -> Result<(), BoxError> {
        match self.0 {
            Some(left) if left > 0 => Err("request body shorter than its Content-Length".into()),
            _ => Ok(()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.0.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// A stream's request body (HTTP/2 or HTTP/3): DATA held to the announced
/// length, then the trailers.
pub struct StreamRequestBody<R> {
    recv: R,
    left: Announced,
    data_done: bool,
}

/// An HTTP/2 stream's request body. Each DATA frame read gives its bytes
/// back to the client's flow-control window, so the client may send more
/// as the app takes them.
pub type H2Body = StreamRequestBody<h2::RecvStream>;
/// An HTTP/3 stream's request body.
pub type H3Body = StreamRequestBody<h3::server::RequestStream<h3_quinn::RecvStream, Bytes>>;

/// The receiving side of one protocol's stream.
pub trait StreamRecv {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>>;
    fn poll_trailers(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<HeaderMap>, BoxError>>;
}

impl StreamRecv for h2::RecvStream {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        let data = ready!(h2::RecvStream::poll_data(self, cx)).map(|read| {
            let data = read?;
            // Taken: the client may send as much again.
            let _ = self.flow_control().release_capacity(data.len());
            Ok(data)
        });
        Poll::Ready(data)
    }

    fn poll_trailers(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<HeaderMap>, BoxError>> {
        h2::RecvStream::poll_trailers(self, cx).map_err(BoxError::from)
    }
}

impl StreamRecv for h3::server::RequestStream<h3_quinn::RecvStream, Bytes> {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        let data = match ready!(self.poll_recv_data(cx)) {
            Ok(Some(mut data)) => Some(Ok(data.copy_to_bytes(data.remaining()))),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        };
        Poll::Ready(data)
    }

    fn poll_trailers(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<HeaderMap>, BoxError>> {
        self.poll_recv_trailers(cx).map_err(BoxError::from)
    }
}

impl<R: StreamRecv> StreamRequestBody<R> {
    pub fn new(recv: R, content_length: Option<u64>) -> Self {
        StreamRequestBody {
            recv,
            left: Announced(content_length),
            data_done: false,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let taken = self.left.take(data.len()).map(|()| Frame::data(data));
                    return Poll::Ready(Some(taken));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.data_done = true;
                    if let Err(e) = self.left.end() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
        let trailers = ready!(self.recv.poll_trailers(cx)).transpose();
        Poll::Ready(trailers.map(|t| t.map(Frame::trailers)))
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Http1(incoming) => {
                Pin::new(incoming).poll_frame(cx).map_err(BoxError::from)
            }
            ClientBody::Http2(stream) => stream.poll_frame(cx),
            ClientBody::Http3(stream) => stream.poll_frame(cx),
            ClientBody::None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http1(incoming) => incoming.is_end_stream(),
            ClientBody::Http2(stream) => stream.data_done || stream.recv.is_end_stream(),
            ClientBody::Http3(stream) => stream.data_done,
            ClientBody::None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http1(incoming) => incoming.size_hint(),
            ClientBody::Http2(stream) => stream.left.size_hint(),
            ClientBody::Http3(stream) => stream.left.size_hint(),
            ClientBody::None => SizeHint::with_exact(0),
        }
    }
}
