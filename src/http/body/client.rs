//! A client's request body as the pipeline reads it: hyper's, for HTTP/1,
//! or an HTTP/2 stream's, read from the h2 crate (thrust drives HTTP/2
//! itself, see `server::http2`).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;

pub enum ClientBody {
    Http1(Incoming),
    Http2(StreamBody),
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
            ClientBody::None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http1(incoming) => incoming.is_end_stream(),
            ClientBody::Http2(stream) => stream.data_done || stream.recv.is_end_stream(),
            ClientBody::None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http1(incoming) => incoming.size_hint(),
            ClientBody::Http2(StreamBody { left: Some(n), .. }) => SizeHint::with_exact(*n),
            ClientBody::Http2(_) => SizeHint::default(),
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
