//! HTTP/2 connections, driven by thrust on the h2 crate — the HTTP/2
//! implementation hyper itself is built on — instead of through hyper's
//! server, which cannot send informational responses: with h2's own
//! streams, the app's 103 Early Hints reach HTTP/2 clients
//! (`stream::h2`). The settings are those hyper's server used. A
//! connection with no stream open is idle in the crowd (`conn::crowd`),
//! and goes with GOAWAY when closed for room.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::handler::Handler;
use super::opening;
use super::stream;
use crate::http::head_scan::MAX_HEAD_BYTES;

/// Streams one client may have open at once.
pub const MAX_STREAMS: u32 = 250;
/// Flow-control windows: how much a client may send ahead, per stream and
/// per connection.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Bytes of an answer h2 holds per stream beyond the client's window.
const SEND_BUFFER: usize = 400 * 1024;
/// Streams a client may make thrust reset for its errors before the
/// connection is closed (h2's guard against reset floods).
const LOCAL_RESETS: usize = 1024;

pub fn settings() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_send_buffer_size(SEND_BUFFER)
        .max_local_error_reset_streams(Some(LOCAL_RESETS))
        // WebSocket over HTTP/2 (RFC 8441).
        .enable_connect_protocol();
    builder
}

/// Serves one HTTP/2 connection (its preface read again first by `io`);
/// when `stop` turns true, GOAWAY, then the open streams finish.
pub async fn serve<S>(
    settings: &h2::server::Builder,
    io: S,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
) -> Result<(), h2::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let seat = handler.conn.state.seat().clone();
    let handshake = settings.handshake::<S, Bytes>(io);
    let Some(handshake) = opening(&seat, handshake).await else {
        return Ok(());
    };
    let mut connection = handshake?;
    // No stream open yet: idle in the crowd.
    seat.idle();
    // One wait for the stop signal for the connection's life, not one per
    // stream: each wait registers with the watch all connections share.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut stopping = false;
    loop {
        tokio::select! {
            next = connection.accept() => match next {
                Some(Ok((req, respond))) => {
                    let open = seat.stream_opened();
                    // Boxed: the task's cell then holds a pointer, which
                    // tokio moves three times in a task's life (spawned,
                    // finished, taken), not the stream's whole state.
                    let served = Box::pin(stream::h2::serve(handler.clone(), req, respond));
                    tokio::spawn(async move {
                        served.await;
                        drop(open);
                    });
                }
                Some(Err(e)) => return Err(e),
                None => break,
            },
            // Closed for room while idle, or stopping: GOAWAY either way.
            _ = seat.shed(), if !stopping => {
                stopping = true;
                connection.graceful_shutdown();
            }
            _ = &mut stopped, if !stopping => {
                stopping = true;
                connection.graceful_shutdown();
            }
        }
    }
    std::future::poll_fn(|cx| connection.poll_closed(cx)).await
}
