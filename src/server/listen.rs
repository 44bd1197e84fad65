//! thrust's listening sockets: bound here, or passed by the service manager.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

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

/// Binds UDP 0.0.0.0:`port`, for QUIC (HTTP/3).
pub fn bind_udp(port: u16, variable: &'static str) -> Result<std::net::UdpSocket, BindError> {
    std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port))).map_err(|source| BindError {
        port,
        variable,
        source,
    })
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
