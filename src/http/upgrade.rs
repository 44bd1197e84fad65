//! The client's side of a switch of protocols (WebSocket): hyper's
//! connection after an HTTP/1.1 `Upgrade`, or an HTTP/2 stream after an
//! extended CONNECT (RFC 8441), whose DATA frames then carry the bytes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::Request;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::http::body::BoxError;

pub enum ClientUpgrade {
    Http1(OnUpgrade),
    Http2(oneshot::Receiver<StreamIo>),
}

/// The client's bytes both ways once switched.
pub trait Tunnel: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Tunnel for T {}

/// Set on an HTTP/2 CONNECT request: the stream, once the 200 is sent.
#[derive(Clone)]
pub struct PendingStream(Arc<Mutex<Option<oneshot::Receiver<StreamIo>>>>);

impl PendingStream {
    pub fn new() -> (PendingStream, oneshot::Sender<StreamIo>) {
        let (sender, receiver) = oneshot::channel();
        (PendingStream(Arc::new(Mutex::new(Some(receiver)))), sender)
    }
}

impl ClientUpgrade {
    pub fn of<B>(req: &mut Request<B>) -> ClientUpgrade {
        let stream = req
            .extensions_mut()
            .remove::<PendingStream>()
            .and_then(|pending| pending.0.lock().ok()?.take());
        match stream {
            Some(receiver) => ClientUpgrade::Http2(receiver),
            None => ClientUpgrade::Http1(hyper::upgrade::on(req)),
        }
    }

    /// The client's connection or stream, once the switch has been answered.
    pub async fn ready(self) -> Result<Box<dyn Tunnel>, BoxError> {
        match self {
            ClientUpgrade::Http1(on) => Ok(Box::new(TokioIo::new(on.await?))),
            ClientUpgrade::Http2(receiver) => Ok(Box::new(receiver.await?)),
        }
    }
}

/// An HTTP/2 stream's DATA frames as a byte stream both ways.
pub struct StreamIo {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    unread: Bytes,
}

impl StreamIo {
    pub fn new(send: h2::SendStream<Bytes>, recv: h2::RecvStream) -> Self {
        StreamIo {
            send,
            recv,
            unread: Bytes::new(),
        }
    }
}

fn io_error(error: h2::Error) -> io::Error {
    if error.is_io() {
        return error
            .into_io()
            .unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    io::Error::new(io::ErrorKind::BrokenPipe, error)
}

impl AsyncRead for StreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.unread = data;
                }
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        let mut capacity = self.send.capacity();
        while capacity == 0 {
            capacity = match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            };
        }
        let n = capacity.min(buf.len());
        self.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The stream's end; a reset stream has ended already.
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
