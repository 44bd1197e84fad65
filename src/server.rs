//! Listeners and client connections: HTTP/1.1 (and h2c when enabled) with
//! thrust's timeouts, until the app server exits.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::admission::{self, Admission, Admitted};
use crate::body::Body;
use crate::conn_io::{ConnIo, Timeouts};
use crate::conn_state::ConnState;
use crate::connection_end::{ended, ConnectionError};
use crate::h2_preface;
use crate::metrics::Protocol;
use crate::parking;
use crate::pipeline::{self, App, ConnInfo};
use crate::protocol::head_scan::MAX_HEAD_BYTES;
use crate::tls::Handshaker;
use crate::upstream::UpstreamClient;
use crate::workers::Workers;
use crate::zero_copy::SendFile;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on port {port} ({variable}): {source}")]
pub struct BindError {
    pub port: u16,
    pub variable: &'static str,
    pub source: io::Error,
}

/// Binds 0.0.0.0:`port` with a backlog fit for bursts of new connections.
pub fn bind(port: u16, variable: &'static str) -> Result<TcpListener, BindError> {
    let wrap = |source| BindError {
        port,
        variable,
        source,
    };
    let socket = TcpSocket::new_v4().map_err(wrap)?;
    socket.set_reuseaddr(true).map_err(wrap)?;
    socket
        .bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .map_err(wrap)?;
    socket.listen(1024).map_err(wrap)
}

/// Serves a listening socket passed by the service manager (socket
/// activation) as if thrust had bound it.
pub fn adopt(
    listener: std::net::TcpListener,
    variable: &'static str,
) -> Result<TcpListener, BindError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let wrap = |source| BindError {
        port,
        variable,
        source,
    };
    listener.set_nonblocking(true).map_err(wrap)?;
    TcpListener::from_std(listener).map_err(wrap)
}

const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(500);
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// HTTP/1.1 alone, or HTTP/1.1 and HTTP/2 told apart by the connection
/// preface (`either`), with HTTP/2 alone for clients that chose h2 by ALPN.
enum Protocols {
    Http1(http1::Builder),
    Auto {
        either: Box<auto::Builder<TokioExecutor>>,
        http2: Box<auto::Builder<TokioExecutor>>,
    },
}

impl Protocols {
    fn new(http2: bool) -> Self {
        if !http2 {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                // Body bytes queued as given, never copied into a flat
                // buffer: file stand-ins rely on it (zero_copy).
                .writev(true)
                // The head's deadline is kept by ConnIo, which knows idle from reading.
                .header_read_timeout(None)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(256);
            return Protocols::Http1(builder);
        }
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(256);
        builder
            .http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(250)
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        Protocols::Auto {
            http2: Box::new(builder.clone().http2_only()),
            either: Box::new(builder),
        }
    }
}

/// The HTTPS side: its listener, the TLS acceptor and whether h2 is offered.
pub struct Https {
    pub listener: TcpListener,
    pub handshaker: Arc<Handshaker>,
    pub http2: bool,
}

pub struct Server {
    pub app: Arc<App>,
    pub h2c: bool,
    pub workers: Workers,
    pub admission: Arc<Admission>,
}

/// What every connection task needs, shared.
struct Shared {
    app: Arc<App>,
    timeouts: Timeouts,
    stop: watch::Receiver<bool>,
    live: mpsc::Sender<()>,
}

impl Shared {
    /// Serves one client connection (plain or decrypted TLS) on the current
    /// worker, with that worker's app connection pool. `h2_preface`: the
    /// client agreed on h2 by ALPN and sent this preface, already read.
    async fn serve<S>(
        &self,
        stream: S,
        remote: SocketAddr,
        https: bool,
        protocols: &Protocols,
        upstream: UpstreamClient,
        h2_preface: Option<Bytes>,
    ) where
        S: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::default());
        let protocol = if h2_preface.is_some() {
            Protocol::H2
        } else {
            Protocol::Http1
        };
        let handler = self.handler(state.clone(), remote, https, upstream, protocol);
        let mut io = ConnIo::new(stream, state.clone(), self.timeouts);
        let (stop, live) = (self.stop.clone(), self.live.clone());
        // Each connection boxed: the task then holds the one in use, not
        // room for the largest of them.
        match (protocols, h2_preface) {
            (Protocols::Auto { http2, .. }, Some(preface)) => {
                // No HTTP/1 head will come: nothing for the head scanner.
                state.set_multiplexed();
                io.read_again(preface);
                let connection = Box::pin(http2.serve_connection(TokioIo::new(io), handler));
                drive(connection, stop, |c| c.graceful_shutdown(), live).await;
            }
            (Protocols::Http1(builder), _) => {
                let io = TokioIo::new(io);
                let connection = Box::pin(builder.serve_connection(io, handler).with_upgrades());
                drive(connection, stop, |c| c.graceful_shutdown(), live).await;
            }
            (
                Protocols::Auto {
                    either: builder, ..
                },
                None,
            ) => {
                let io = TokioIo::new(io);
                let connection = Box::pin(
                    builder
                        .serve_connection_with_upgrades(io, handler)
                        .into_owned(),
                );
                drive(connection, stop, |c| c.graceful_shutdown(), live).await;
            }
        }
    }

    /// Serves a plain connection; HTTP/1-only ones are parked while idle.
    async fn serve_plain(
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

/// What hyper calls for each request of one client connection.
#[derive(Clone)]
pub struct Handler {
    app: Arc<App>,
    conn: Arc<ConnInfo>,
}

impl Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    // Boxed: hyper keeps the request's future inside the connection, so
    // unboxed its size would be held by every idle keep-alive connection.
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let (app, conn) = (self.app.clone(), self.conn.clone());
        Box::pin(async move { Ok(pipeline::handle(app, conn, req).await) })
    }
}

/// Moves an accepted connection to the next worker and serves it there; TLS
/// handshakes run on the worker too.
fn dispatch(
    workers: &Workers,
    shared: &Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<(Arc<Handshaker>, Duration, Arc<Protocols>)>,
    plain: &Arc<Protocols>,
    admitted: Admitted,
) {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            return tracing::debug!(error = %e, remote = %remote, "Cannot hand over a connection")
        }
    };
    let worker = workers.next();
    let upstream = worker.upstream.clone();
    let shared = shared.clone();
    // Plain and TLS connections are separate tasks so that a plain one does
    // not hold room for a TLS handshake and stream for as long as it is open.
    let Some((handshaker, limit, secure)) = tls else {
        let plain = plain.clone();
        worker.handle.spawn(async move {
            let _admitted = admitted;
            if let Some(stream) = take_over(stream, remote) {
                shared.serve_plain(stream, remote, &plain, upstream).await
            }
        });
        return;
    };
    worker.handle.spawn(async move {
        let _admitted = admitted;
        let Some(stream) = take_over(stream, remote) else {
            return;
        };
        match tokio::time::timeout(limit, handshaker.accept(stream)).await {
            Ok(Ok(mut tls)) => {
                // A client that agreed on h2 must open with HTTP/2's preface.
                let preface = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    match tokio::time::timeout(limit, h2_preface::read(&mut tls)).await {
                        Ok(Ok(Some(preface))) => Some(preface),
                        Ok(Ok(None)) => {
                            return tracing::debug!(remote = %remote, "Wrong HTTP/2 preface, answered with GOAWAY")
                        }
                        Ok(Err(e)) => return tracing::debug!(error = %e, remote = %remote, "No HTTP/2 preface"),
                        Err(_) => return tracing::debug!(remote = %remote, "HTTP/2 preface timed out"),
                    }
                } else {
                    None
                };
                shared
                    .serve(tls, remote, true, &secure, upstream, preface)
                    .await
            }
            Ok(Err(e)) => tracing::debug!(error = %e, remote = %remote, "TLS handshake failed"),
            Err(_) => tracing::debug!(remote = %remote, "TLS handshake timed out"),
        }
    });
}

/// Registers a handed-over socket with the current worker's own event loop.
fn take_over(stream: std::net::TcpStream, remote: SocketAddr) -> Option<TcpStream> {
    TcpStream::from_std(stream)
        .map_err(|e| tracing::debug!(error = %e, remote = %remote, "Cannot take over a connection"))
        .ok()
}

/// Accepts on `listener`. On failure (out of descriptors, most often) it
/// waits, longer each time up to `ACCEPT_PAUSE_MAX`, rather than spin; the
/// first failure is logged, then one line every `ACCEPT_WARN_EVERY` while
/// they last. Pending forever when there is no listener.
async fn accept(listener: Option<&TcpListener>) -> (TcpStream, SocketAddr) {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    let mut pause = ACCEPT_PAUSE_MIN;
    let mut failed = 0u64;
    let mut warned: Option<std::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if failed > 0 {
                    tracing::info!(failed, "Accepting connections again");
                }
                let _ = stream.set_nodelay(true);
                return (stream, remote);
            }
            Err(e) => {
                failed += 1;
                if warned.is_none_or(|at| at.elapsed() >= ACCEPT_WARN_EVERY) {
                    warned = Some(std::time::Instant::now());
                    tracing::warn!(error = %e, failed, retry_in_ms = pause.as_millis() as u64, "Accept failed");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
            }
        }
    }
}

impl Server {
    fn timeouts(&self) -> Timeouts {
        let config = &self.app.config;
        let limit = |d: Duration| (!d.is_zero()).then_some(d);
        Timeouts {
            idle: limit(config.idle_timeout),
            read: limit(config.read_timeout),
            write: limit(config.write_timeout),
        }
    }

    /// Accepts connections until `stop` completes, then lets open requests
    /// finish for up to THRUST_SHUTDOWN_TIMEOUT.
    pub async fn serve_until<F: Future>(
        self,
        http: TcpListener,
        https: Option<Https>,
        stop: F,
    ) -> F::Output {
        let plain = Arc::new(Protocols::new(self.h2c));
        let secure = Arc::new(Protocols::new(https.as_ref().is_some_and(|h| h.http2)));
        // Connections hold `live` senders: once all are gone, all have closed.
        let (stop_tx, stop_rx) = watch::channel(false);
        let (live_tx, mut live_rx) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            app: self.app.clone(),
            timeouts: self.timeouts(),
            stop: stop_rx,
            live: live_tx,
        });
        let handshake_limit = self.timeouts().read.unwrap_or(Duration::from_secs(30));
        tokio::pin!(stop);
        let output = loop {
            tokio::select! {
                output = &mut stop => break output,
                (stream, remote) = accept(Some(&http)) => {
                    let Some(admitted) = self.admission.admit() else {
                        // Answered with 503 while few are; else closed now.
                        if let Some(refusal) = self.admission.refusal() {
                            tokio::spawn(admission::refuse(refusal, stream));
                        }
                        continue;
                    };
                    dispatch(&self.workers, &shared, stream, remote, None, &plain, admitted);
                }
                (stream, remote) = accept(https.as_ref().map(|h| &h.listener)) => {
                    let Some(handshaker) = https.as_ref().map(|h| h.handshaker.clone()) else { continue };
                    // Over the limit, closed now: no handshake is spent on it.
                    let Some(admitted) = self.admission.admit() else { continue };
                    let tls = Some((handshaker, handshake_limit, secure.clone()));
                    dispatch(&self.workers, &shared, stream, remote, tls, &plain, admitted);
                }
            }
        };
        drop(http);
        drop(https);
        let limit = self.app.config.shutdown_timeout;
        stop_tx.send_replace(true);
        drop(shared);
        if tokio::time::timeout(limit, live_rx.recv()).await.is_err() {
            tracing::warn!(
                timeout_s = limit.as_secs(),
                "Requests still open after THRUST_SHUTDOWN_TIMEOUT were cut"
            );
        }
        output
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
