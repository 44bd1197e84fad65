//! The server layer: thrust's listeners and the client connections on them.
//!
//! Owns binding or adopting the listening sockets (`activation` for sockets
//! a service manager passes), admitting connections within the limit
//! (`admission`, closing idle and slow connections for room at the limit),
//! the per-CPU worker threads (`workers`), serving each
//! connection: HTTP/1.1 with hyper, HTTP/2 (h2c, or after TLS; `h2_preface`)
//! on the h2 crate (`http2`), HTTP/3 on quinn and the h3 crate (`http3`),
//! each HTTP/2 or HTTP/3 request stream the same way (`stream`); parking
//! idle keep-alive connections (`parking`) and reading their heads before
//! hyper starts (`head_read`), and how a connection ended
//! (`connection_end`).
//!
//! May call: every layer below (conn, pipeline, tls, app's upstream pool,
//! metrics, http, memory, config, log). Nothing below calls it.

pub mod activation;
pub mod admission;
mod connection;
mod connection_end;
mod h2_preface;
mod handler;
mod head_read;
mod http2;
pub mod http3;
pub mod listen;
mod parking;
mod protocols;
mod proxy_protocol;
mod stream;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

use crate::conn::accept;
use crate::conn::crowd::Seat;
use crate::conn::socket::Timeouts;
use crate::pipeline::App;
use crate::tls::Handshaker;
use admission::{Admission, Admitted};
use connection::{Opened, Shared};
use protocols::Protocols;
use workers::Workers;

/// The HTTPS side: its listener, the TLS acceptor, whether h2 is offered,
/// and with THRUST_HTTP3 the QUIC endpoint on its UDP twin.
pub struct Https {
    pub listener: TcpListener,
    pub handshaker: Arc<Handshaker>,
    pub http2: bool,
    pub quic: Option<quinn::Endpoint>,
}

pub struct Server {
    pub app: Arc<App>,
    pub h2c: bool,
    pub workers: Workers,
    pub admission: Arc<Admission>,
}

/// What a new connection weighs in admission, by where it came
/// (`config::memory_budget`); an HTTP/2 one weighs more once it is known.
pub(super) mod weight {
    use crate::config::memory_budget::{CONNECTION, HTTP2_STATE, HTTP3_CONNECTION, TLS_SESSION};

    const fn bytes(n: u64) -> usize {
        n as usize
    }

    pub const PLAIN: usize = bytes(CONNECTION);
    pub const TLS: usize = bytes(CONNECTION + TLS_SESSION);
    pub const QUIC: usize = bytes(HTTP3_CONNECTION);
    /// What a connection found to speak HTTP/2 weighs on top.
    pub const HTTP2: usize = bytes(HTTP2_STATE);
}

/// Moves an accepted connection to the next worker and serves it there; TLS
/// handshakes run on the worker too.
fn dispatch(
    workers: &Workers,
    shared: &Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<(Arc<Handshaker>, Arc<Protocols>)>,
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
    // Plain and TLS connections are separate tasks, so that a plain one
    // does not hold room for a TLS session for as long as it is open. Each
    // opens in a box of its own: what opening holds (the PROXY header, the
    // handshake, the preface) is gone once the connection is open, where
    // inline it would stay in the task for the connection's life.
    let Some((handshaker, secure)) = tls else {
        let plain = plain.clone();
        worker.handle.spawn(async move {
            let seat = admitted.seat().clone();
            let opened = Box::pin(async {
                let taken_over = opening(&seat, take_over(stream, remote, &shared)).await;
                let (stream, remote) = taken_over.flatten()?;
                shared.open(stream, remote, &plain, None, &seat).await
            });
            // Taken out in a statement of its own: an `if let` would keep
            // room for it until the connection ends.
            let Some(opened) = opened.await else {
                return;
            };
            shared.serve_plain(opened, upstream, seat).await;
            drop(admitted);
        });
        return;
    };
    worker.handle.spawn(async move {
        let seat = admitted.seat().clone();
        let opened = Box::pin(open_tls(
            &shared,
            &seat,
            stream,
            remote,
            &handshaker,
            &secure,
        ));
        let Some(opened) = opened.await else {
            return;
        };
        shared.serve_tls(opened, upstream, seat).await;
        drop(admitted);
    });
}

/// Opens a TLS connection: its PROXY header, the handshake and, from a
/// client that agreed on h2, HTTP/2's preface, each within the opening
/// time; `None` if it failed or was closed for room first.
async fn open_tls<'p>(
    shared: &Shared,
    seat: &Seat,
    stream: std::net::TcpStream,
    remote: SocketAddr,
    handshaker: &Handshaker,
    protocols: &'p Protocols,
) -> Option<Opened<'p, TlsStream<TcpStream>>> {
    let (stream, remote) = opening(seat, take_over(stream, remote, shared)).await??;
    let limit = shared.opening;
    let handshake = opening(seat, tokio::time::timeout(limit, handshaker.accept(stream)));
    let mut tls = match handshake.await? {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, remote = %remote, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(remote = %remote, "TLS handshake timed out");
            return None;
        }
    };
    // A client that agreed on h2 must open with HTTP/2's preface.
    let mut preface = None;
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let read = opening(
            seat,
            tokio::time::timeout(limit, h2_preface::read(&mut tls)),
        );
        match read.await? {
            Ok(Ok(Some(read))) => preface = Some(read),
            Ok(Ok(None)) => {
                tracing::debug!(remote = %remote, "Wrong HTTP/2 preface, answered with GOAWAY");
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, remote = %remote, "No HTTP/2 preface");
                return None;
            }
            Err(_) => {
                tracing::debug!(remote = %remote, "HTTP/2 preface timed out");
                return None;
            }
        }
    }
    shared.open(tls, remote, protocols, preface, seat).await
}

/// One step of opening a connection (its PROXY header, TLS handshake,
/// HTTP/2 preface), given up (`None`) if the connection is closed for room
/// meanwhile: a client that takes that long to open holds no request.
pub(super) async fn opening<F: Future>(seat: &Seat, step: F) -> Option<F::Output> {
    tokio::select! {
        output = step => Some(output),
        _ = seat.shed() => {
            tracing::debug!("Connection closed while opening, for room (THRUST_MAX_CONNECTIONS)");
            None
        }
    }
}

/// Registers a handed-over socket with the current worker's own event loop
/// and, with THRUST_PROXY_PROTOCOL, reads the client it is for; `None`: the
/// connection is closed.
async fn take_over(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(TcpStream, SocketAddr)> {
    let mut stream = TcpStream::from_std(stream)
        .map_err(|e| tracing::debug!(error = %e, remote = %peer, "Cannot take over a connection"))
        .ok()?;
    let config = &shared.app.config;
    if !config.proxy_protocol {
        return Some((stream, peer));
    }
    let trusted = |ip| config.trusted_proxies.trusts(ip);
    let limit = shared.opening;
    match tokio::time::timeout(limit, proxy_protocol::read(&mut stream, peer, trusted)).await {
        Ok(Ok(client)) => Some((stream, client)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, peer = %peer, "Connection closed: THRUST_PROXY_PROTOCOL is on");
            None
        }
        Err(_) => {
            tracing::warn!(peer = %peer, timeout_s = limit.as_secs(), "Connection closed: no PROXY protocol header in time (THRUST_PROXY_PROTOCOL is on)");
            None
        }
    }
}

/// Serves a new QUIC connection on the worker its endpoint runs on.
fn dispatch_quic(
    workers: &Workers,
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
    admitted: Admitted,
) {
    // Counted from here, not from when the worker gets to it: a flood
    // outruns the worker.
    let handshaking = shared.handshakes.begin();
    let worker = workers.quic_home();
    let upstream = worker.upstream.clone();
    let shared = shared.clone();
    let seat = admitted.seat().clone();
    // The handshake in a box of its own, made here: captured by the task,
    // the attempt (`Incoming`) and the handshake's state would keep their
    // room in it for the connection's life.
    let opened = {
        let (shared, seat) = (shared.clone(), seat.clone());
        Box::pin(async move { shared.open_quic(incoming, &seat, handshaking).await })
    };
    worker.handle.spawn(async move {
        // Taken out in a statement of its own: an `if let` would keep room
        // for it until the connection ends.
        let Some((connection, remote)) = opened.await else {
            return;
        };
        shared.serve_quic(connection, remote, upstream, seat).await;
        drop(admitted);
    });
}

/// The next QUIC connection attempt on `endpoint`; pending forever when
/// there is none (or it has closed).
async fn accept_quic(endpoint: Option<&quinn::Endpoint>) -> quinn::Incoming {
    match endpoint {
        Some(endpoint) => match endpoint.accept().await {
            Some(incoming) => incoming,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The next connection on `listener`, with Nagle's algorithm off; pending
/// forever when there is no listener.
async fn accept(listener: Option<&TcpListener>, name: &'static str) -> (TcpStream, SocketAddr) {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    let (stream, remote) = accept::retrying(name, || listener.accept()).await;
    let _ = stream.set_nodelay(true);
    (stream, remote)
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
            // HTTP_READ_TIMEOUT, or 30 s when that is 0 (no limit at all
            // would let a silent socket hold its slot for ever).
            opening: self.timeouts().read.unwrap_or(Duration::from_secs(30)),
            stop: stop_rx,
            live: live_tx,
            handshakes: Default::default(),
            admission: self.admission.clone(),
        });
        tokio::pin!(stop);
        let output = loop {
            tokio::select! {
                output = &mut stop => break output,
                (stream, remote) = accept(Some(&http), "http") => {
                    let Some(admitted) = self.admission.admit(weight::PLAIN) else {
                        // Answered with 503 while few are; else closed now.
                        if let Some(refusal) = self.admission.refusal() {
                            tokio::spawn(admission::refuse(refusal, stream));
                        }
                        continue;
                    };
                    dispatch(&self.workers, &shared, stream, remote, None, &plain, admitted);
                }
                (stream, remote) = accept(https.as_ref().map(|h| &h.listener), "https") => {
                    let Some(handshaker) = https.as_ref().map(|h| h.handshaker.clone()) else { continue };
                    // Over the limit, closed now: no handshake is spent on it.
                    let Some(admitted) = self.admission.admit(weight::TLS) else { continue };
                    let tls = Some((handshaker, secure.clone()));
                    dispatch(&self.workers, &shared, stream, remote, tls, &plain, admitted);
                }
                incoming = accept_quic(https.as_ref().and_then(|h| h.quic.as_ref())) => {
                    // Handshakes piling up: a client must prove its address
                    // (Retry) before one is spent on it, so spoofed Initial
                    // packets hold no place.
                    if shared.handshakes.piling_up() && !incoming.remote_address_validated() && incoming.may_retry() {
                        let _ = incoming.retry();
                        continue;
                    }
                    // Over the limit: refused before any handshake is spent.
                    let Some(admitted) = self.admission.admit(weight::QUIC) else {
                        incoming.refuse();
                        continue;
                    };
                    dispatch_quic(&self.workers, &shared, incoming, admitted);
                }
            }
        };
        // New QUIC connections are refused from here on; open ones get
        // their GOAWAY through `stop`.
        if let Some(endpoint) = https.as_ref().and_then(|h| h.quic.as_ref()) {
            endpoint.set_server_config(None);
        }
        drop(http);
        drop(https);
        let limit = self.app.config.shutdown_timeout;
        stop_tx.send_replace(true);
        // Parked and new connections wait on the crowd, not on `stop`.
        self.admission.stop();
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
