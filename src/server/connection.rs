//! Serving one client connection on a worker: hyper's HTTP/1.1 connection
//! or thrust's HTTP/2 one (`http2`) over thrust's socket wrapper, or an
//! HTTP/3 one over QUIC (`http3`), until it closes or thrust stops.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::connection_end::ended;
use super::h2_preface;
use super::handler::Handler;
use super::http2;
use super::http3;
use super::opening;
use super::parking::{self, Readable};
use super::protocols::Protocols;
use crate::app::upstream::UpstreamClient;
use crate::conn::crowd::Seat;
use crate::conn::socket::{ConnIo, Timeouts};
use crate::conn::state::ConnState;
use crate::conn::zero_copy::SendFile;
use crate::metrics::{OpenClientConnection, Protocol};
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
    /// QUIC handshakes under way (`http3::Handshakes`).
    pub handshakes: http3::Handshakes,
}

/// What a connection turned out to speak, with the bytes read to tell.
enum Speaks<'p> {
    Http1(&'p http1::Builder, Bytes),
    Http2(&'p h2::server::Builder, Bytes),
}

impl Shared {
    /// Serves one decrypted TLS connection on the current worker, with that
    /// worker's app connection pool. `h2_preface`: the client agreed on h2
    /// by ALPN and sent this preface, already read.
    pub async fn serve_tls<S>(
        &self,
        mut stream: S,
        remote: SocketAddr,
        protocols: &Protocols,
        upstream: UpstreamClient,
        h2_preface: Option<Bytes>,
        seat: Arc<Seat>,
    ) where
        S: AsyncRead + AsyncWrite + SendFile + Readable + Unpin + Send + 'static,
    {
        let protocol = if h2_preface.is_some() {
            Protocol::H2
        } else {
            Protocol::Http1
        };
        let counted = self.count(protocol);
        let told = opening(&seat, self.tell(&mut stream, protocols, h2_preface));
        let Some(Some(speaks)) = told.await else {
            return;
        };
        let state = Arc::new(ConnState::seated(seat));
        let handler = self.handler(state.clone(), remote, true, upstream, counted);
        let io = ConnIo::new(stream, state.clone(), self.timeouts);
        match speaks {
            Speaks::Http2(settings, preface) => {
                self.serve_http2(io, &state, handler, settings, preface)
                    .await
            }
            Speaks::Http1(builder, first) => {
                let io = io.park_after(parking::PARK_AFTER);
                let (stop, live) = (self.stop.clone(), self.live.clone());
                parking::serve(builder, io, first, state, handler, stop, live).await;
            }
        }
    }

    /// Serves a plain connection; HTTP/1 ones are parked while idle, and send
    /// files in place of stand-ins.
    pub async fn serve_plain(
        &self,
        mut stream: TcpStream,
        remote: SocketAddr,
        protocols: &Protocols,
        upstream: UpstreamClient,
        seat: Arc<Seat>,
    ) {
        let counted = self.count(Protocol::Http1);
        let told = opening(&seat, self.tell(&mut stream, protocols, None));
        let (builder, first) = match told.await.flatten() {
            None => return,
            Some(Speaks::Http1(builder, first)) => (builder, first),
            Some(Speaks::Http2(settings, preface)) => {
                let state = Arc::new(ConnState::seated(seat));
                let handler = self.handler(state.clone(), remote, false, upstream, counted);
                let io = ConnIo::new(stream, state.clone(), self.timeouts);
                return self
                    .serve_http2(io, &state, handler, settings, preface)
                    .await;
            }
        };
        // hyper's own HTTP/1 connection with vectored writes: body bytes reach
        // the socket as queued, so file bodies may be sent as stand-ins.
        let state = Arc::new(ConnState::sending_files(seat));
        let handler = self.handler(state.clone(), remote, false, upstream, counted);
        let io = ConnIo::new(stream, state.clone(), self.timeouts).park_after(parking::PARK_AFTER);
        let (stop, live) = (self.stop.clone(), self.live.clone());
        parking::serve(builder, io, first, state, handler, stop, live).await;
    }

    /// Serves one QUIC connection: its handshake within the opening time,
    /// then HTTP/3 until it closes or thrust stops.
    pub async fn serve_quic(
        &self,
        incoming: quinn::Incoming,
        upstream: UpstreamClient,
        seat: Arc<Seat>,
        handshaking: http3::Handshaking,
    ) {
        let remote = incoming.remote_address();
        let connecting = match incoming.accept() {
            Ok(connecting) => connecting,
            Err(e) => {
                return tracing::debug!(error = %e, remote = %remote, "QUIC connection not accepted")
            }
        };
        let handshake = opening(&seat, tokio::time::timeout(self.opening, connecting));
        let handshake = handshake.await;
        drop(handshaking);
        let connection = match handshake {
            None => return,
            Some(Ok(Ok(connection))) => connection,
            Some(Ok(Err(e))) => {
                return tracing::debug!(error = %e, remote = %remote, "QUIC handshake failed")
            }
            Some(Err(_)) => return tracing::debug!(remote = %remote, "QUIC handshake timed out"),
        };
        let counted = self.count(Protocol::H3);
        let state = Arc::new(ConnState::seated(seat));
        // No HTTP/1 head will come: nothing for the head scanner.
        state.set_multiplexed();
        let handler = self.handler(state, remote, true, upstream, counted);
        let live = self.live.clone();
        let served = http3::serve(connection, handler, self.opening, self.stop.clone()).await;
        if let Err(e) = served {
            if !e.is_h3_no_error() {
                tracing::debug!(error = %e, remote = %remote, "HTTP/3 connection ended with an error");
            }
        }
        drop(live);
    }

    /// Which protocol the connection speaks: known from the listener or
    /// ALPN, or told by its first bytes where both are served; `None` if it
    /// ended (or sent nothing in time) first.
    async fn tell<'p, S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        protocols: &'p Protocols,
        h2_preface: Option<Bytes>,
    ) -> Option<Speaks<'p>> {
        match (protocols, h2_preface) {
            (Protocols::Http1(builder), _) => Some(Speaks::Http1(builder, Bytes::new())),
            (Protocols::Both { http2, .. }, Some(preface)) => Some(Speaks::Http2(http2, preface)),
            (Protocols::Both { http1, http2 }, None) => {
                let sniffed = tokio::time::timeout(self.opening, h2_preface::sniff(stream));
                match sniffed.await {
                    Ok(Ok((true, preface))) => Some(Speaks::Http2(http2, preface)),
                    Ok(Ok((false, read))) => Some(Speaks::Http1(http1, read)),
                    Ok(Err(e)) => {
                        ended(Err(e));
                        None
                    }
                    Err(_) => {
                        ended(Err(io::Error::from(io::ErrorKind::TimedOut)));
                        None
                    }
                }
            }
        }
    }

    async fn serve_http2<S>(
        &self,
        mut io: ConnIo<S>,
        state: &ConnState,
        handler: Handler,
        settings: &h2::server::Builder,
        preface: Bytes,
    ) where
        S: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
    {
        // No HTTP/1 head will come: nothing for the head scanner.
        state.set_multiplexed();
        let shed = state.seat().weigh_more(super::weight::HTTP2);
        if let (Some(shed), Some(metrics)) = (shed, &self.app.metrics) {
            metrics.connection_turned_away(Some(shed as usize));
        }
        io.read_again(preface);
        let live = self.live.clone();
        let served = Box::pin(http2::serve(settings, io, handler, self.stop.clone())).await;
        ended(served);
        drop(live);
    }

    /// The connection's place in the open-connections gauge, from its
    /// start; one found to be h2c moves there with its first request.
    fn count(&self, protocol: Protocol) -> Option<OpenClientConnection> {
        self.app
            .metrics
            .as_ref()
            .map(|m| m.connection_opened(protocol))
    }

    fn handler(
        &self,
        state: Arc<ConnState>,
        remote: SocketAddr,
        https: bool,
        upstream: UpstreamClient,
        counted: Option<OpenClientConnection>,
    ) -> Handler {
        let conn = Arc::new(ConnInfo {
            remote,
            https,
            state,
            upstream,
            counted,
        });
        let app = self.app.clone();
        Handler { app, conn }
    }
}
