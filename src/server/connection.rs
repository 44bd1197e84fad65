//! Serving one client connection on a worker: hyper's HTTP/1.1 connection
//! or thrust's HTTP/2 one (`http2`) over thrust's socket wrapper, until it
//! closes or thrust stops.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::connection_end::{ended, ConnectionError};
use super::h2_preface;
use super::handler::Handler;
use super::http2;
use super::parking;
use super::protocols::Protocols;
use crate::app::upstream::UpstreamClient;
use crate::conn::socket::{ConnIo, Timeouts};
use crate::conn::state::ConnState;
use crate::conn::zero_copy::SendFile;
use crate::metrics::Protocol;
use crate::pipeline::{App, ConnInfo};

/// What every connection task needs, shared.
pub struct Shared {
    pub app: Arc<App>,
    pub timeouts: Timeouts,
    /// How long a new connection has for each step before HTTP: its PROXY
    /// header, the TLS handshake, the HTTP/2 preface.
    pub opening: Duration,
    pub stop: watch::Receiver<bool>,
    pub live: mpsc::Sender<()>,
}

impl Shared {
    /// Serves one client connection (plain or decrypted TLS) on the current
    /// worker, with that worker's app connection pool. `h2_preface`: the
    /// client agreed on h2 by ALPN and sent this preface, already read.
    pub async fn serve<S>(
        &self,
        mut stream: S,
        remote: SocketAddr,
        https: bool,
        protocols: &Protocols,
        upstream: UpstreamClient,
        h2_preface: Option<Bytes>,
    ) where
        S: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::default());
        // Counted from the start; a connection found to be h2c moves to that
        // protocol with its first request.
        let protocol = if h2_preface.is_some() {
            Protocol::H2
        } else {
            Protocol::Http1
        };
        let handler = self.handler(state.clone(), remote, https, upstream, protocol);
        let (first, http2) = match (protocols, h2_preface) {
            (Protocols::Http1(_), _) => (Bytes::new(), None),
            (Protocols::Both { http2, .. }, Some(preface)) => (preface, Some(http2)),
            (Protocols::Both { http2, .. }, None) => {
                let sniffed = tokio::time::timeout(self.opening, h2_preface::sniff(&mut stream));
                match sniffed.await {
                    Ok(Ok((true, preface))) => (preface, Some(http2)),
                    Ok(Ok((false, read))) => (read, None),
                    Ok(Err(e)) => return ended(Err(e)),
                    Err(_) => return ended(Err(io::Error::from(io::ErrorKind::TimedOut))),
                }
            }
        };
        let mut io = ConnIo::new(stream, state.clone(), self.timeouts);
        let (stop, live) = (self.stop.clone(), self.live.clone());
        // Each connection boxed: the task then holds the one in use, not
        // room for the largest of them.
        match (protocols, http2) {
            (_, Some(settings)) => {
                // No HTTP/1 head will come: nothing for the head scanner.
                state.set_multiplexed();
                io.read_again(first);
                ended(Box::pin(http2::serve(settings, io, handler, stop)).await);
                drop(live);
            }
            (Protocols::Http1(builder) | Protocols::Both { http1: builder, .. }, None) => {
                io.read_first(first);
                let io = TokioIo::new(io);
                let connection = Box::pin(builder.serve_connection(io, handler).with_upgrades());
                drive(connection, stop, |c| c.graceful_shutdown(), live).await;
            }
        }
    }

    /// Serves a plain connection; HTTP/1-only ones are parked while idle.
    pub async fn serve_plain(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        protocols: &Protocols,
        upstream: UpstreamClient,
    ) {
        let Protocols::Http1(builder) = protocols else {
            return self
                .serve(stream, remote, false, protocols, upstream, None)
                .await;
        };
        // hyper's own HTTP/1 connection with vectored writes: body bytes reach
        // the socket as queued, so file bodies may be sent as stand-ins.
        let state = Arc::new(ConnState::sending_files());
        let handler = self.handler(state.clone(), remote, false, upstream, Protocol::Http1);
        let io = ConnIo::new(stream, state.clone(), self.timeouts).park_after(parking::PARK_AFTER);
        let (stop, live) = (self.stop.clone(), self.live.clone());
        parking::serve(builder, io, state, handler, stop, live).await;
    }

    fn handler(
        &self,
        state: Arc<ConnState>,
        remote: SocketAddr,
        https: bool,
        upstream: UpstreamClient,
        protocol: Protocol,
    ) -> Handler {
        let conn = Arc::new(ConnInfo {
            remote,
            https,
            state,
            upstream,
            counted: self
                .app
                .metrics
                .as_ref()
                .map(|m| m.connection_opened(protocol)),
        });
        let app = self.app.clone();
        Handler { app, conn }
    }
}

/// Serves one connection; when `stop` turns true, asks it to finish its
/// open requests and close.
async fn drive<C, E>(
    mut connection: Pin<Box<C>>,
    mut stop: watch::Receiver<bool>,
    graceful: impl FnOnce(Pin<&mut C>),
    _live: mpsc::Sender<()>,
) where
    C: Future<Output = Result<(), E>>,
    E: ConnectionError,
{
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.changed() => {
            graceful(connection.as_mut());
            connection.await
        }
    };
    ended(result);
}
