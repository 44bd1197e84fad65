//! Serving one client connection on a worker: hyper's HTTP/1.1 connection
//! or thrust's HTTP/2 one (`http2`) over thrust's socket wrapper, or an
//! HTTP/3 one over QUIC (`http3`), until it closes or thrust stops.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt;
use hyper::server::conn::http1;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::admission::Admission;
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
use crate::conn::socket::{ConnIo, ParkedIo, Timeouts};
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
    /// Where a connection found heavier than it was admitted as makes room.
    pub admission: Arc<Admission>,
}

/// What a connection turned out to speak, with the bytes read to tell.
enum Speaks<'p> {
    Http1(&'p http1::Builder, Bytes),
    Http2(&'p h2::server::Builder, Bytes),
}

/// A connection past its opening, ready to serve: the client it is for,
/// what it speaks, and its place in the open-connections gauge.
pub struct Opened<'p, S> {
    stream: S,
    remote: SocketAddr,
    speaks: Speaks<'p>,
    counted: Option<OpenClientConnection>,
}

impl Shared {
    /// Tells what `stream` speaks (`tell`) within the opening time; `None`
    /// if it ended, took too long or was closed for room first.
    /// `h2_preface`: a TLS client agreed on h2 by ALPN and sent this
    /// preface, already read.
    pub async fn open<'p, S: AsyncRead + Unpin>(
        &self,
        mut stream: S,
        remote: SocketAddr,
        protocols: &'p Protocols,
        h2_preface: Option<Bytes>,
        seat: &Seat,
    ) -> Option<Opened<'p, S>> {
        let protocol = if h2_preface.is_some() {
            Protocol::H2
        } else {
            Protocol::Http1
        };
        let counted = self.count(protocol);
        let told = opening(seat, self.tell(&mut stream, protocols, h2_preface));
        let speaks = told.await.flatten()?;
        Some(Opened {
            stream,
            remote,
            speaks,
            counted,
        })
    }

    /// Serves a plain connection on the current worker, with that worker's
    /// app connection pool; HTTP/1 ones are parked while idle, and send
    /// files in place of stand-ins.
    pub fn serve_plain<'a>(
        &'a self,
        opened: Opened<'a, TcpStream>,
        upstream: UpstreamClient,
        seat: Arc<Seat>,
    ) -> impl Future<Output = ()> + 'a {
        // hyper's own HTTP/1 connection with vectored writes: body bytes
        // reach the socket as queued, so file bodies may be sent as stand-ins.
        self.serve(opened, false, upstream, seat, ConnState::sending_files)
    }

    /// Serves a decrypted TLS connection, as `serve_plain` (files are sent
    /// through TLS as any body).
    pub fn serve_tls<'a, S>(
        &'a self,
        opened: Opened<'a, S>,
        upstream: UpstreamClient,
        seat: Arc<Seat>,
    ) -> impl Future<Output = ()> + 'a
    where
        S: AsyncRead + AsyncWrite + SendFile + Readable + Unpin + Send + 'static,
    {
        self.serve(opened, true, upstream, seat, ConnState::seated)
    }

    /// Not an `async fn`, nor are those it returns: each layer of `async`
    /// would hold the connection's socket (and TLS session) once more for
    /// as long as it is open; here only the protocol's future holds it.
    /// `http1_state`: the connection's state if it speaks HTTP/1 (an
    /// HTTP/2 one never sends files in place of stand-ins).
    fn serve<'a, S>(
        &'a self,
        opened: Opened<'a, S>,
        https: bool,
        upstream: UpstreamClient,
        seat: Arc<Seat>,
        http1_state: fn(Arc<Seat>) -> ConnState,
    ) -> impl Future<Output = ()> + 'a
    where
        S: AsyncRead + AsyncWrite + SendFile + Readable + Unpin + Send + 'static,
    {
        let Opened {
            stream,
            remote,
            speaks,
            counted,
        } = opened;
        let state = Arc::new(match speaks {
            Speaks::Http2(..) => ConnState::seated(seat),
            Speaks::Http1(..) => http1_state(seat),
        });
        let handler = self.handler(state.clone(), remote, https, upstream, counted);
        match speaks {
            // Boxed: an HTTP/1 connection's task need not have room for it.
            Speaks::Http2(settings, preface) => {
                let io = ConnIo::new(stream, state.clone(), self.timeouts);
                Either::Left(Box::pin(
                    self.serve_http2(io, &state, handler, settings, preface),
                ))
            }
            Speaks::Http1(builder, first) => {
                let parked = ParkedIo::new(stream, state, self.timeouts);
                let (stop, live) = (self.stop.clone(), self.live.clone());
                Either::Right(parking::serve(builder, parked, first, handler, stop, live))
            }
        }
    }

    /// A QUIC connection's handshake, within the opening time; `None`: it
    /// was refused, failed, timed out or was closed for room.
    pub async fn open_quic(
        &self,
        incoming: quinn::Incoming,
        seat: &Seat,
        handshaking: http3::Handshaking,
    ) -> Option<(quinn::Connection, SocketAddr)> {
        let remote = incoming.remote_address();
        let connecting = match incoming.accept() {
            Ok(connecting) => connecting,
            Err(e) => {
                tracing::debug!(error = %e, remote = %remote, "QUIC connection not accepted");
                return None;
            }
        };
        let handshake = opening(seat, tokio::time::timeout(self.opening, connecting)).await;
        drop(handshaking);
        match handshake? {
            Ok(Ok(connection)) => Some((connection, remote)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, remote = %remote, "QUIC handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(remote = %remote, "QUIC handshake timed out");
                None
            }
        }
    }

    /// Serves an open QUIC connection with HTTP/3 until it closes or thrust
    /// stops. Not an `async fn`, and the end handled by `map`: either would
    /// hold the HTTP/3 future twice (as an argument or captured, and as
    /// awaited) for the connection's life.
    pub fn serve_quic(
        &self,
        connection: quinn::Connection,
        remote: SocketAddr,
        upstream: UpstreamClient,
        seat: Arc<Seat>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let counted = self.count(Protocol::H3);
        let state = Arc::new(ConnState::seated(seat));
        // No HTTP/1 head will come: nothing for the head scanner.
        state.set_multiplexed();
        let handler = self.handler(state, remote, true, upstream, counted);
        let live = self.live.clone();
        http3::serve(connection, handler, self.opening, self.stop.clone()).map(move |served| {
            if let Err(e) = served {
                if !e.is_h3_no_error() {
                    tracing::debug!(error = %e, remote = %remote, "HTTP/3 connection ended with an error");
                }
            }
            drop(live);
        })
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

    fn serve_http2<'p, S>(
        &self,
        mut io: ConnIo<S>,
        state: &ConnState,
        handler: Handler,
        settings: &'p h2::server::Builder,
        preface: Bytes,
    ) -> impl Future<Output = ()> + use<'p, S>
    where
        S: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
    {
        // No HTTP/1 head will come: nothing for the head scanner.
        state.set_multiplexed();
        self.admission
            .weigh_more(state.seat(), super::weight::HTTP2);
        io.read_again(preface);
        let live = self.live.clone();
        http2::serve(settings, io, handler, self.stop.clone()).map(move |served| {
            ended(served);
            drop(live);
        })
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
