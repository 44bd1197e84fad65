//! A client's request body as the pipeline reads it: hyper's, for HTTP/1,
//! an HTTP/2 stream's, read from the h2 crate (thrust drives HTTP/2
//! itself, see `server::http2`), or an HTTP/3 stream's, from the h3 crate.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;

pub enum ClientBody {
    Http1(Incoming),
    Http2(StreamBody),
    Http3(QuicBody),
    /// An HTTP/2 CONNECT: the stream's bytes belong to the tunnel.
    None,
}

/// An HTTP/2 stream's request body. Each DATA frame read gives its bytes
/// back to the client's flow-control window, so the client may send more
/// as the app takes them.
pub struct StreamBody {
    recv: h2::RecvStream,
    /// Bytes the content-length header announces and that have not come;
    /// the h2 crate refuses a stream whose DATA does not add up to it.
    left: Option<u64>,
    data_done: bool,
}

impl StreamBody {
    pub fn new(recv: h2::RecvStream, content_length: Option<u64>) -> Self {
        StreamBody {
            recv,
            left: content_length,
            data_done: false,
        }
    }
}

/// An HTTP/3 stream's request body. The h3 crate does not hold DATA to
/// the Content-Length the head announced, so this does: a body longer or
/// shorter than announced is an error, never passed on as it came.
pub struct QuicBody {
    recv: h3::server::RequestStream<h3_quinn::RecvStream, Bytes>,
    left: Option<u64>,
    data_done: bool,
}

impl QuicBody {
    pub fn new(
        recv: h3::server::RequestStream<h3_quinn::RecvStream, Bytes>,
        content_length: Option<u64>,
    ) -> Self {
        QuicBody {
            recv,
            left: content_length,
            data_done: false,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_recv_data(cx)) {
                Ok(Some(mut data)) => {
                    let data = data.copy_to_bytes(data.remaining());
                    if let Some(left) = &mut self.left {
                        match left.checked_sub(data.len() as u64) {
                            Some(rest) => *left = rest,
                            None => {
                                return Poll::Ready(Some(Err(
                                    "request body longer than its Content-Length".into(),
                                )))
                            }
                        }
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) => {
                    self.data_done = true;
                    if self.left.is_some_and(|left| left > 0) {
                        return Poll::Ready(Some(Err(
                            "request body shorter than its Content-Length".into(),
                        )));
                    }
                }
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
        match ready!(self.recv.poll_recv_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
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
            ClientBody::Http2(StreamBody { left: Some(n), .. }) => SizeHint::with_exact(*n),
            ClientBody::Http2(_) => SizeHint::default(),
            ClientBody::Http3(QuicBody { left: Some(n), .. }) => SizeHint::with_exact(*n),
            ClientBody::Http3(_) => SizeHint::default(),
            ClientBody::None => SizeHint::with_exact(0),
        }
    }
}

impl StreamBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Taken: the client may send as much again.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut self.left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }
}
