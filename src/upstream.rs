//! The keep-alive connection pool to the app server, over TCP or a Unix socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{self, InvalidUriParts, PathAndQuery};
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::body::Body;
use crate::config::Worker;

pub type UpstreamClient = Client<WorkerConnector, Body>;

/// Builds the pool. Every request goes to the worker whatever its URI says;
/// the URI only names the pool.
pub fn client(worker: &Worker) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        // Below Puma's 20 s persistent timeout, so thrust drops an idle
        // connection before the app server does and never races its close.
        .pool_idle_timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(256)
        // The Host header is the client's, passed as received; never invent one.
        .set_host(false)
        .build(WorkerConnector {
            worker: Arc::new(worker.clone()),
        })
}

/// The URI prefix requests to the worker are given.
pub fn base_uri(worker: &Worker) -> String {
    match worker {
        Worker::Port(port) => format!("http://127.0.0.1:{port}"),
        Worker::Socket(_) => "http://localhost".to_string(),
    }
}

/// The URI a request goes to the app with: the pool's scheme and authority,
/// the client's path and query as they came.
pub fn app_uri(base: &Uri, target: Option<&PathAndQuery>) -> Result<Uri, InvalidUriParts> {
    let mut parts = uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(
        target
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts)
}

#[derive(Clone)]
pub struct WorkerConnector {
    worker: Arc<Worker>,
}

impl tower_service::Service<Uri> for WorkerConnector {
    type Response = TokioIo<WorkerStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let worker = self.worker.clone();
        Box::pin(async move {
            let stream = match &*worker {
                Worker::Port(port) => {
                    let tcp = TcpStream::connect(("127.0.0.1", *port)).await?;
                    tcp.set_nodelay(true)?;
                    WorkerStream::Tcp(tcp)
                }
                Worker::Socket(path) => WorkerStream::Unix(UnixStream::connect(path).await?),
            };
            Ok(TokioIo::new(stream))
        })
    }
}

pub enum WorkerStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection for WorkerStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
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
