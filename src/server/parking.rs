//! Parking idle keep-alive connections (HTTP/1, plain or TLS).
//!
//! hyper holds a read and a write buffer (8 KiB each, allocated up front)
//! and its connection state for as long as a connection is open, so a
//! thousand idle keep-alive connections would hold about 20 MiB. Once a
//! connection has been idle between requests for `PARK_AFTER`, its hyper
//! connection is ended without closing the socket, and thrust waits for the
//! next bytes with nothing but the socket and what its next request needs
//! to know (`ParkedIo`): the connection's task then holds only that, as
//! serving (the head being read, hyper's connection, the I/O's timers) is
//! boxed and gone. A new connection waits for its first bytes the same
//! way. Then the head is read into a small buffer (`head_read`) and a new
//! hyper connection is started on the socket with it. HTTP_IDLE_TIMEOUT
//! and shutdown apply to parked connections as to the others. A parked connection is idle in
//! the crowd (`conn::crowd`): at the connection limit the longest parked
//! is closed to make room.
//!
//! HTTP/1 over TLS is parked too: rustls keeps its session in the stream,
//! but hyper's buffers and connection go. HTTP/2 connections are not
//! parked; with h2c on, a plain connection is parked once its first bytes
//! have told it is HTTP/1 (`Shared::serve_plain`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1::{self, UpgradeableConnection};
use hyper_util::rt::TokioIo;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

use super::handler::Handler;
use super::head_read::{self, NextHead};
use crate::conn::crowd::Seat;
use crate::conn::socket::{ConnIo, ParkedIo};
use crate::conn::zero_copy::SendFile;
use crate::server::connection_end::{ended, ConnectionError};

/// How long a connection idles between requests before it is parked: long
/// enough that a busy client's next request finds its connection as it left
/// it, short enough that idle ones cost little.
pub const PARK_AFTER: Duration = Duration::from_millis(100);

/// The same while a large crowd is open (`conn::crowd::LARGE_CROWD`): what
/// thousands of connections hold in the while before they park is most of
/// the crowd's memory; a client asking 20–100 ms apart then pays a park
/// and a wake between its requests.
pub const PARK_AFTER_IN_A_CROWD: Duration = Duration::from_millis(20);

/// A socket a parked connection waits on: readable once the client sends.
pub trait Readable {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Readable for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

/// TLS: readable at once when rustls holds decrypted bytes (a request that
/// came with the end of the handshake), else when the socket is. hyper let
/// go of a parked connection only once it had read everything rustls could
/// decrypt, so what comes next arrives on the socket.
impl Readable for TlsStream<TcpStream> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (socket, session) = self.get_ref();
        if !session.wants_read() {
            return Poll::Ready(Ok(()));
        }
        socket.poll_read_ready(cx)
    }
}

/// Serves a connection until it closes, parking it whenever it idles.
/// `first`: the bytes read to tell its protocol (none: it waits for them
/// parked).
pub fn serve<S>(
    builder: &http1::Builder,
    mut parked: ParkedIo<S>,
    mut first: Bytes,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
    live: mpsc::Sender<()>,
) -> impl Future<Output = ()> + '_
where
    S: AsyncRead + AsyncWrite + SendFile + Readable + Unpin + Send + 'static,
{
    // Not an `async fn`: its arguments would be held twice (once as
    // given, once as moved into its body) for as long as it is open.
    async move {
        // Held until the connection ends: shutdown waits for every holder.
        let _live = &live;
        let seat = handler.conn.state.seat();
        // A connection that has sent nothing yet holds no buffer either.
        if first.is_empty() && !wait_for_bytes(&parked, seat).await {
            return;
        }
        loop {
            let io = parked.wake().park_after(PARK_AFTER, PARK_AFTER_IN_A_CROWD);
            // Boxed: what serving holds (the head being read, hyper's
            // connection, the I/O's timers) is gone while the connection is
            // parked, where inline every connection's task would keep room
            // for it; a box is one allocation per wake.
            let serving =
                serve_until_idle(builder, io, std::mem::take(&mut first), &handler, &mut stop);
            parked = match Box::pin(serving).await {
                Some(parked) => parked,
                None => return,
            };
            // Counted while parked, with metrics on.
            let _parked = handler.conn.counted.as_ref().map(|c| c.parked());
            // Parked is idle: closed first when the house is full.
            seat.idle();
            if !wait_for_bytes(&parked, seat).await {
                return;
            }
        }
    }
}

/// Serves requests on `io` until it idles long enough to park (its parked
/// I/O is returned) or closes (`None`).
fn serve_until_idle<'a, S>(
    builder: &'a http1::Builder,
    mut io: ConnIo<S>,
    mut first: Bytes,
    handler: &'a Handler,
    stop: &'a mut watch::Receiver<bool>,
) -> impl Future<Output = Option<ParkedIo<S>>> + 'a
where
    S: AsyncRead + AsyncWrite + SendFile + Readable + Unpin + Send + 'static,
{
    async move {
        let state = &handler.conn.state;
        let seat = state.seat();
        loop {
            // hyper starts once a head is here whole, unless it left bytes unread.
            if !io.replaying() {
                let first = std::mem::take(&mut first);
                // No hyper connection to let go of it meanwhile.
                io.pause_parking(true);
                let next = head_read::next_head(&mut io, first, seat, stop).await;
                io.pause_parking(false);
                match next {
                    NextHead::Read(head) => io.read_again(head),
                    NextHead::Closed(result) => return closed(result),
                }
            }
            let mut connection = Box::pin(
                builder
                    .serve_connection(TokioIo::new(io), handler.clone())
                    .with_upgrades(),
            );
            let result = tokio::select! {
                result = connection.as_mut() => return closed(result),
                // Closed for room at the limit: idle, or its head too slow.
                _ = seat.shed() => return closed(Ok::<(), io::Error>(())),
                _ = stopping(stop) => {
                    connection.as_mut().graceful_shutdown();
                    return closed(connection.await);
                }
                _ = state.parking() => {
                    // Idle: hyper closes at once, leaving the socket open.
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(e) = result {
                return closed(Err(e));
            }
            // None: the connection was upgraded, and belongs to the upgrade now.
            let (back, read_buf) = take_apart(connection)?;
            io = back;
            let unread = !read_buf.is_empty();
            io.unpark(read_buf);
            if !unread {
                return Some(io.park());
            }
        }
    }
}

/// Ready once thrust is stopping. Looked at whenever the connection is
/// polled (a request, the app's answer, a write, the park timer) rather
/// than waited on: registering with the stop signal at each wake cost a
/// parked connection's request about 800 instructions. A connection quiet
/// when thrust stops learns it within `PARK_AFTER`, when it parks and
/// waits on the crowd (`wait_for_bytes`), which `Crowd::stop` wakes.
fn stopping(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |_| {
        if *stop.borrow() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// A connection's end, logged (`ended`): nothing to park.
fn closed<S, E: ConnectionError>(result: Result<(), E>) -> Option<ParkedIo<S>> {
    ended(result);
    None
}

/// hyper's connection let go of: the socket and the bytes it read beyond
/// the last request; `None` if it was upgraded. Taken apart in a function
/// of its own: hyper's parts, kept whole in `serve` (the rest of them are
/// dropped at the end of their scope), would hold room for a second socket
/// while the connection is parked.
fn take_apart<S>(
    connection: Pin<Box<UpgradeableConnection<TokioIo<ConnIo<S>>, Handler>>>,
) -> Option<(ConnIo<S>, Bytes)>
where
    S: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
{
    let parts = Pin::into_inner(connection).into_parts()?;
    Some((parts.io.into_inner(), parts.read_buf))
}

/// Waits on a parked connection: true once the client sends bytes, false if
/// it closes, idles past HTTP_IDLE_TIMEOUT, is closed for room or thrust
/// stops.
async fn wait_for_bytes<S: Readable>(parked: &ParkedIo<S>, seat: &Seat) -> bool {
    // One future for all of it: each waiting connection's task holds it.
    let mut idle = std::pin::pin!(parked.idle_deadline().map(tokio::time::sleep_until));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(readable) = parked.get_ref().poll_readable(cx) {
            return Poll::Ready(readable.is_ok());
        }
        if let Some(idle) = idle.as_mut().as_pin_mut() {
            if idle.poll(cx).is_ready() {
                tracing::debug!("Connection ended: idle connection (HTTP_IDLE_TIMEOUT)");
                return Poll::Ready(false);
            }
        }
        // Closed for room, or thrust stopping (`Crowd::stop`).
        if seat.poll_closing(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}
