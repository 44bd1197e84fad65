//! On-demand TLS's question to the app: may this name have a certificate?
//! `GET <ask>?domain=<name>` (`&domain=` when the ask has a query), to the
//! app's port or socket for a path, or to an `http://` URL; 200 is yes,
//! anything else — or no answer within `ANSWER_WITHIN` — is no. Answers
//! are kept (a yes for `YES_KEPT`, a no for `NO_KEPT`), so the app is asked
//! once per name in that time, and handshakes for one name at once share
//! one question. At most `ASKING` questions are open at a time; a handshake
//! past that is refused without asking (and without keeping a no).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use moka::future::Cache;
use moka::Expiry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::config::{AskAt, Worker};

const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const YES_KEPT: Duration = Duration::from_secs(600);
const NO_KEPT: Duration = Duration::from_secs(60);
const ASKING: usize = 8;
/// Names whose answer is kept at most: a flood of names asked once each
/// holds this many small entries, not more.
const KEPT_AT_MOST: u64 = 10_000;

pub struct Ask {
    at: AskAt,
    worker: Worker,
    answers: Cache<String, bool>,
    asking: Arc<Semaphore>,
}

/// A yes is kept longer than a no.
struct Kept;

impl Expiry<String, bool> for Kept {
    fn expire_after_create(&self, _: &String, yes: &bool, _: Instant) -> Option<Duration> {
        Some(if *yes { YES_KEPT } else { NO_KEPT })
    }
}

/// Why no answer was kept.
#[derive(Clone, Debug)]
struct TooManyAsking;

impl Ask {
    pub fn new(at: AskAt, worker: Worker) -> Self {
        Ask {
            at,
            worker,
            answers: Cache::builder()
                .max_capacity(KEPT_AT_MOST)
                .expire_after(Kept)
                .build(),
            asking: Arc::new(Semaphore::new(ASKING)),
        }
    }

    /// Whether the app allows `name` (a name `on_demand::acceptable` took).
    pub async fn allows(&self, name: &str) -> bool {
        let asked = self
            .answers
            .try_get_with(name.to_string(), async {
                let _permit = self
                    .asking
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| TooManyAsking)?;
                Ok::<bool, TooManyAsking>(self.question(name).await)
            })
            .await;
        match asked {
            Ok(yes) => yes,
            Err(_) => {
                tracing::warn!(name, "On-demand TLS: too many names asked about at once, handshake refused without asking");
                false
            }
        }
    }

    async fn question(&self, name: &str) -> bool {
        let answer = tokio::time::timeout(ANSWER_WITHIN, self.send(name)).await;
        let status = match answer {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                tracing::warn!(name, error = %e, "On-demand TLS: the ask URL could not be reached; no certificate");
                return false;
            }
            Err(_) => {
                tracing::warn!(
                    name,
                    "On-demand TLS: the ask URL did not answer within 5 s; no certificate"
                );
                return false;
            }
        };
        let yes = status == StatusCode::OK;
        tracing::info!(
            name,
            status = status.as_u16(),
            allowed = yes,
            "On-demand TLS: asked whether to order a certificate"
        );
        yes
    }

    async fn send(&self, name: &str) -> std::io::Result<StatusCode> {
        let (path, host) = match &self.at {
            AskAt::App { path } => (path, "localhost"),
            AskAt::Url { authority, path } => (path, authority.as_str()),
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        let target = format!("{path}{separator}domain={name}");
        match (&self.at, &self.worker) {
            (AskAt::Url { authority, .. }, _) => {
                let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
                exchange(stream, &target, host).await
            }
            (AskAt::App { .. }, Worker::Port(port)) => {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", *port)).await?;
                exchange(stream, &target, host).await
            }
            (AskAt::App { .. }, Worker::Socket(socket)) => {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                exchange(stream, &target, host).await
            }
        }
    }
}

/// One GET on a connection of its own; the answer's status.
async fn exchange<S>(stream: S, target: &str, host: &str) -> std::io::Result<StatusCode>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let request = Request::get(target)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "thrust (on-demand TLS)")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(std::io::Error::other)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    Ok(response.status())
}
