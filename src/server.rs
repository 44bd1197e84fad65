//! Listeners and client connections: HTTP/1.1 (and h2c when enabled) with
//! thrust's timeouts, until the app server exits.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};

use crate::conn_io::{ConnIo, Timeouts};
use crate::conn_state::ConnState;
use crate::pipeline::{self, App, ConnInfo};

/// Largest request head accepted; larger gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

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

/// HTTP/1.1 alone, or HTTP/1.1 and HTTP/2 told apart by the connection preface.
enum Protocols {
    Http1(http1::Builder),
    Auto(auto::Builder<TokioExecutor>),
}

pub struct Server {
    pub app: Arc<App>,
    pub https: bool,
    pub h2c: bool,
}

impl Server {
    /// HTTP/1.1 settings shared by both connection kinds.
    fn tune_http1(builder: &mut http1::Builder) {
        builder
            .timer(TokioTimer::new())
            // The head's deadline is kept by ConnIo, which knows idle from reading.
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(256);
    }

    fn protocols(&self) -> Protocols {
        if !self.h2c {
            let mut builder = http1::Builder::new();
            Self::tune_http1(&mut builder);
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
            .max_concurrent_streams(250)
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        Protocols::Auto(builder)
    }

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
    pub async fn serve_until<F: Future>(self, listener: TcpListener, stop: F) -> F::Output {
        let protocols = Arc::new(self.protocols());
        let timeouts = self.timeouts();
        // Connections hold `live` senders: once all are gone, all have closed.
        let (stop_tx, stop_rx) = watch::channel(false);
        let (live_tx, mut live_rx) = mpsc::channel::<()>(1);
        tokio::pin!(stop);
        let output = loop {
            let (stream, remote) = tokio::select! {
                output = &mut stop => break output,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "Accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let state = Arc::new(ConnState::default());
            let conn = Arc::new(ConnInfo {
                remote,
                https: self.https,
                state: state.clone(),
            });
            let app = self.app.clone();
            let service = service_fn(move |req| {
                let app = app.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(pipeline::handle(app, conn, req).await) }
            });
            let io = TokioIo::new(ConnIo::new(stream, state, timeouts));
            let stop = stop_rx.clone();
            let live = live_tx.clone();
            match &*protocols {
                Protocols::Http1(builder) => {
                    let connection = builder.serve_connection(io, service).with_upgrades();
                    tokio::spawn(drive(connection, stop, |c| c.graceful_shutdown(), live));
                }
                Protocols::Auto(builder) => {
                    let connection = builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned();
                    tokio::spawn(drive(connection, stop, |c| c.graceful_shutdown(), live));
                }
            }
        };
        drop(listener);
        let limit = self.app.config.shutdown_timeout;
        stop_tx.send_replace(true);
        drop(live_tx);
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
    connection: C,
    mut stop: watch::Receiver<bool>,
    graceful: impl FnOnce(Pin<&mut C>),
    _live: mpsc::Sender<()>,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.changed() => {
            graceful(connection.as_mut());
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "Connection ended with an error");
    }
}
