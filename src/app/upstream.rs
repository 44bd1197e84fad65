//! The keep-alive connections to the app server, over TCP or a Unix socket:
//! one pool per worker thread (`server::workers`), on hyper's HTTP/1 client.
//!
//! A connection goes back to the pool when its response body has been read
//! to the end; one whose answer was abandoned is closed. A request that a
//! reused connection could not even send (the app closed it meanwhile) is
//! tried once more on a new connection. Connections to a copy of the app
//! that `thrust restart` replaced are not reused. THRUST_MAX_APP_CONNECTIONS
//! bounds the requests at the app and the connections open to it, across
//! the pools (`app_connections`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::app::app_connections::{AppConnections, Counted};
use crate::app::target::{AppCopy, AppTarget, OpenConnection};
use crate::config::Worker;
use crate::http::body::Body;

/// Below Puma's 20 s persistent timeout, so thrust drops an idle connection
/// before the app server does and rarely races its close.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections kept per worker thread.
const MAX_IDLE: usize = 256;
/// Once traffic quiets down, idle connections beyond the most recently used
/// `QUIET_KEEP` are closed after `QUIET_AFTER` unused: a burst's connections
/// do not stay open (and hold memory) for IDLE_TIMEOUT, while under steady
/// load each is reused well within a second and none is closed.
const QUIET_KEEP: usize = 32;
const QUIET_AFTER: Duration = Duration::from_secs(1);
/// Most an app connection's read buffer grows to (response heads included,
/// which this also bounds; nginx reads them into 4 or 8 KiB).
const APP_READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the app server: {0}")]
    Connect(#[source] io::Error),
    #[error("HTTP handshake with the app server failed: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("{0}")]
    Request(#[source] hyper::Error),
}

/// One worker's pool; clones share it.
#[derive(Clone)]
pub struct UpstreamClient {
    pool: Arc<Pool>,
}

struct Pool {
    target: Arc<AppTarget>,
    idle: Mutex<Vec<Idle>>,
    cap: Arc<AppConnections>,
}

/// A connection to the app and the generation of the copy it reaches.
struct AppConnection {
    sender: SendRequest<Body>,
    generation: u64,
    /// Its place in THRUST_MAX_APP_CONNECTIONS' count, shared with its
    /// connection task so that the place is given back only once the
    /// socket has closed (or the exchange turned long-lived).
    counted: Arc<Mutex<Option<Counted>>>,
}

impl AppConnection {
    /// Leaves the count: the exchange is long-lived.
    fn uncount(&self) {
        if let Ok(mut counted) = self.counted.lock() {
            counted.take();
        }
    }

    /// Joins the count again, if there is room.
    fn recount(&self, cap: &Arc<AppConnections>) -> bool {
        let Ok(mut counted) = self.counted.lock() else {
            return false;
        };
        if counted.is_none() {
            *counted = cap.try_count();
        }
        counted.is_some()
    }
}

struct Idle {
    connection: AppConnection,
    since: Instant,
}

/// A pool to `target` with its share of THRUST_MAX_APP_CONNECTIONS.
pub fn client(target: Arc<AppTarget>, cap: Arc<AppConnections>) -> UpstreamClient {
    UpstreamClient {
        pool: Arc::new(Pool {
            target,
            idle: Mutex::new(Vec::new()),
            cap,
        }),
    }
}

impl UpstreamClient {
    /// Sends `req` (any URI: only its path and query are sent) and returns
    /// the app's response head; the body streams from the app.
    pub async fn request(
        &self,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        origin_form(req.uri_mut());
        let upload = !req.body().is_end_stream();
        let pool = &self.pool;
        loop {
            let (mut connection, reused) = match pool.checkout().await {
                Some(connection) => (connection, true),
                None => match pool.cap.try_count() {
                    Some(counted) => (pool.connect(Some(counted)).await?, false),
                    // An upload does not wait: see `app_connections`.
                    None if upload => (pool.connect(None).await?, false),
                    None => {
                        let room = || pool.has_idle() || !pool.cap.full();
                        pool.cap.wait_for_room(room).await;
                        continue;
                    }
                },
            };
            match connection.sender.try_send_request(req).await {
                Ok(response) => return Ok(self.pool.clone().track(connection, response)),
                Err(mut failed) => match failed.take_message() {
                    // Never written: the app had closed this idle connection.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Request(failed.into_error())),
                },
            }
        }
    }

    /// Whether this pool's share of THRUST_MAX_APP_CONNECTIONS is reached
    /// (requests wait).
    pub fn saturated(&self) -> bool {
        self.pool.cap.full()
    }

    /// This pool's share of THRUST_MAX_APP_CONNECTIONS.
    pub fn app_connections(&self) -> &Arc<AppConnections> {
        &self.pool.cap
    }

    /// Closes idle connections to any copy but the current one: to a copy
    /// that was replaced (so only requests still in flight keep it busy),
    /// or opened ahead to one that never became current.
    pub fn close_all_but_current(&self) {
        let generation = self.pool.target.generation();
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.retain(|i| i.connection.generation == generation);
        }
    }

    /// Closes the idle connections a quiet pool no longer needs (see
    /// `QUIET_KEEP`); connections opened ahead to a copy that is not current
    /// yet are kept for the switch.
    pub fn trim(&self) {
        let generation = self.pool.target.generation();
        let Ok(mut idle) = self.pool.idle.lock() else {
            return;
        };
        let unused =
            |i: &Idle| i.connection.generation <= generation && i.since.elapsed() >= QUIET_AFTER;
        // Oldest first: the pool takes and returns at the end.
        let surplus = idle.len().saturating_sub(QUIET_KEEP);
        let closing = idle.iter().take(surplus).take_while(|i| unused(i)).count();
        idle.drain(..closing);
    }

    /// Opens up to `count` connections to `copy` before requests are
    /// switched to it, kept below this pool's idle connections until then.
    /// Must run on this pool's worker thread. Without them, every request in
    /// flight at the switch would open a connection at once, and an app
    /// server that accepts new connections only while it has idle threads
    /// (Puma) would leave most of them in its listen queue for as long as
    /// the others keep it busy. Returns how many were opened.
    pub async fn open_ahead(&self, copy: Arc<AppCopy>, count: usize) -> usize {
        let room = match self.pool.idle.lock() {
            Ok(idle) => MAX_IDLE.saturating_sub(idle.len()),
            Err(_) => 0,
        };
        // Only as many as the cap has room for: idle connections all count.
        let counts: Vec<Counted> = (0..count.min(room))
            .map_while(|_| self.pool.cap.try_count())
            .collect();
        let opening = counts.into_iter().map(|counted| {
            self.pool
                .connect_to(copy.clone(), copy.count_connection(), Some(counted))
        });
        let opened: Vec<AppConnection> = futures_util::future::join_all(opening)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let count = opened.len();
        if let Ok(mut idle) = self.pool.idle.lock() {
            let now = Instant::now();
            idle.splice(
                0..0,
                opened.into_iter().map(|connection| Idle {
                    connection,
                    since: now,
                }),
            );
        }
        count
    }
}

impl Pool {
    /// The newest idle connection that is still open, fresh and to the
    /// current copy of the app. Connections opened ahead to a copy that is
    /// not current yet lie below the others and stay where they are.
    async fn checkout(&self) -> Option<AppConnection> {
        let generation = self.target.generation();
        loop {
            let Idle {
                mut connection,
                since,
            } = {
                let mut idle = self.idle.lock().ok()?;
                let newest = idle.last()?;
                if newest.connection.generation > generation {
                    return None;
                }
                idle.pop()?
            };
            if connection.sender.is_closed()
                || since.elapsed() >= IDLE_TIMEOUT
                || connection.generation != generation
            {
                continue;
            }
            // Its last body was read to the end: it is ready as soon as its
            // connection task has run, on this same thread.
            if connection.sender.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    /// Whether `checkout` has an idle connection to look at (one opened
    /// ahead to a copy that is not current yet does not count).
    fn has_idle(&self) -> bool {
        let generation = self.target.generation();
        self.idle.lock().is_ok_and(|idle| {
            idle.last()
                .is_some_and(|i| i.connection.generation <= generation)
        })
    }

    async fn connect(&self, counted: Option<Counted>) -> Result<AppConnection, UpstreamError> {
        // Counted before connecting, so a copy being replaced is not stopped
        // while this connection is on its way to it.
        let (copy, open) = self.target.open_connection();
        self.connect_to(copy, open, counted).await
    }

    async fn connect_to(
        &self,
        copy: Arc<AppCopy>,
        open: OpenConnection,
        counted: Option<Counted>,
    ) -> Result<AppConnection, UpstreamError> {
        let counted = Arc::new(Mutex::new(counted));
        let gauge = self.cap.open();
        let stream = match &copy.address {
            Worker::Port(port) => {
                let tcp = TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .map_err(UpstreamError::Connect)?;
                tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
                WorkerStream::Tcp(tcp)
            }
            Worker::Socket(path) => WorkerStream::Unix(
                UnixStream::connect(path)
                    .await
                    .map_err(UpstreamError::Connect)?,
            ),
        };
        // The read buffer grows only to APP_READ_BUFFER: behind a client
        // that reads slowly, an app connection holds that much of the answer,
        // not the 400 KiB hyper would let it grow to.
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(APP_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Handshake)?;
        let held = counted.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "App connection ended with an error");
            }
            drop(open);
            drop(gauge);
            drop(held);
        });
        Ok(AppConnection {
            sender,
            generation: copy.generation(),
            counted,
        })
    }

    /// Keeps a connection whose exchange is over for the next request; an
    /// idle connection always counts against the cap (one that left the
    /// count is closed if there is no room for it again).
    fn put_back(&self, connection: AppConnection) {
        if connection.sender.is_closed()
            || connection.generation != self.target.generation()
            || !connection.recount(&self.cap)
        {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() >= MAX_IDLE {
                idle.remove(0);
            }
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
        self.cap.handed_back();
    }

    /// The response with a body that hands the connection back at its end.
    fn track(
        self: Arc<Self>,
        connection: AppConnection,
        response: Response<Incoming>,
    ) -> Response<PooledBody> {
        // A WebSocket or an event stream may last for hours: it leaves the
        // count so that it cannot starve the queue.
        let long_lived = response.status() == http::StatusCode::SWITCHING_PROTOCOLS
            || response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
        if long_lived {
            connection.uncount();
        }
        let (parts, incoming) = response.into_parts();
        let mut body = PooledBody {
            incoming,
            owner: Some((connection, self)),
        };
        if body.incoming.is_end_stream() {
            body.release();
        }
        Response::from_parts(parts, body)
    }
}

/// An app response body; its connection returns to the pool once the body
/// has been read to the end, and closes if the body is dropped before.
pub struct PooledBody {
    incoming: Incoming,
    owner: Option<(AppConnection, Arc<Pool>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((connection, pool)) = self.owner.take() {
            pool.put_back(connection);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.incoming).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.incoming.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.owner = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// The request line's target: path and query only, as HTTP/1.1 servers
/// expect (an HTTP/2 client's request carries scheme and authority).
fn origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    let path_and_query = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(path_and_query);
}

pub enum WorkerStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for WorkerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WorkerStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            WorkerStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WorkerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WorkerStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            WorkerStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WorkerStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WorkerStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WorkerStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            WorkerStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WorkerStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WorkerStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
