//! HTTP/3: QUIC connections on the UDP twin of the HTTPS port (quinn), the
//! h3 crate's HTTP/3 over each, every request stream served by the
//! pipeline (`stream::h3`). The limits are HTTP/2's (`http2`): streams per
//! connection, flow-control windows, the head's size, the idle timeout.
//! Once `RETRY_PAST` handshakes are under way, a new client must prove its
//! address (QUIC Retry) before one is spent on it. A
//! connection with no stream open is idle in the crowd (`conn::crowd`),
//! and goes with GOAWAY when closed for room.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::watch;

use super::handler::Handler;
use super::http2::{CONNECTION_WINDOW, MAX_STREAMS, STREAM_WINDOW};
use super::stream;
use crate::http::head_scan::MAX_HEAD_BYTES;

/// QUIC handshakes under way past which a new one must first prove its
/// address with a Retry (one round trip more, and no state kept for it):
/// legitimate clients rarely have this many handshakes at once, spoofed
/// Initial packets do.
const RETRY_PAST: usize = 64;

/// Unidirectional streams a client may open: HTTP/3 needs three (control,
/// QPACK encoder and decoder); a few more for extensions thrust ignores.
const UNI_STREAMS: u32 = 8;
/// Bytes of answers a connection holds beyond what the client has taken.
const SEND_WINDOW: u64 = 1024 * 1024;

/// How many QUIC handshakes are under way.
#[derive(Default)]
pub struct Handshakes(Arc<AtomicUsize>);

/// One handshake under way, counted until dropped.
pub struct Handshaking(Arc<AtomicUsize>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handshakes {
    pub fn begin(&self) -> Handshaking {
        self.0.fetch_add(1, Ordering::Relaxed);
        Handshaking(self.0.clone())
    }

    /// Whether new clients must prove their address first (Retry).
    pub fn piling_up(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= RETRY_PAST
    }
}

/// The UDP socket and QUIC configuration, checked at start-up; the endpoint
/// itself is opened once the workers run (`open`).
pub struct Pending {
    socket: UdpSocket,
    server: quinn::ServerConfig,
}

/// QUIC on `socket` with `tls` (`tls::quic_config`).
pub fn prepare(
    socket: UdpSocket,
    tls: Arc<rustls::ServerConfig>,
    idle: Option<Duration>,
) -> io::Result<Pending> {
    let crypto = QuicServerConfig::try_from(tls).map_err(io::Error::other)?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS.into())
        .max_concurrent_uni_streams(UNI_STREAMS.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .send_window(SEND_WINDOW)
        // HTTP_IDLE_TIMEOUT, as on TCP; QUIC cannot go beyond its own cap.
        .max_idle_timeout(idle.and_then(|d| quinn::IdleTimeout::try_from(d).ok()));
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    Ok(Pending { socket, server })
}

impl Pending {
    /// Opens the endpoint on the runtime of `home`, the worker that serves
    /// every QUIC connection: quinn runs the endpoint's and each
    /// connection's driver where the endpoint was made, so the requests'
    /// tasks there never wait on another thread (spread over the workers,
    /// each request crossed threads twice).
    pub fn open(self, home: &tokio::runtime::Handle) -> io::Result<quinn::Endpoint> {
        let _entered = home.enter();
        quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(self.server),
            self.socket,
            Arc::new(quinn::TokioRuntime),
        )
    }
}

/// Serves one QUIC connection's requests; when `stop` turns true, GOAWAY,
/// then the open requests finish. `opening`: how long a request stream has
/// to send its head.
pub async fn serve(
    connection: quinn::Connection,
    handler: Handler,
    opening: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), h3::error::ConnectionError> {
    let seat = handler.conn.state.seat().clone();
    // Setting up and shutting down are boxed: inline, the task would keep
    // room for them while the connection waits.
    let mut h3 = Box::pin(
        h3::server::builder()
            .max_field_section_size(MAX_HEAD_BYTES as u64)
            .build::<_, Bytes>(h3_quinn::Connection::new(connection.clone())),
    )
    .await?;
    // No stream open yet: idle in the crowd.
    seat.idle();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut stopping = false;
    loop {
        tokio::select! {
            next = h3.accept() => match next? {
                Some(resolver) => {
                    let open = seat.stream_opened();
                    let (handler, connection) = (handler.clone(), connection.clone());
                    // Boxed, as HTTP/2's streams (server/http2.rs).
                    let served = Box::pin(stream::h3::serve(handler, resolver, connection, opening));
                    tokio::spawn(async move {
                        served.await;
                        drop(open);
                    });
                }
                // After a GOAWAY either way, once the last request is done.
                None => return Ok(()),
            },
            // Closed for room while idle, or stopping: GOAWAY either way.
            _ = seat.shed(), if !stopping => {
                stopping = true;
                Box::pin(h3.shutdown(0)).await?;
            }
            _ = &mut stopped, if !stopping => {
                stopping = true;
                Box::pin(h3.shutdown(0)).await?;
            }
        }
    }
}
