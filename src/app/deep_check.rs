//! The deep health check (THRUST_HEALTH_UPSTREAM_PATH): one request to the
//! app's own health path, its result reused for a second, and a hint in the
//! log when the app answers what deploys usually trip on.

use std::time::{Duration, Instant};

use http::{header, Request};
use tokio::sync::Mutex;

use crate::app::upstream::UpstreamClient;
use crate::http::body;

/// How long a deep-check result is reused.
const DEEP_CHECK_TTL: Duration = Duration::from_secs(1);
/// How long the app gets to answer the deep check.
const DEEP_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning about a failing deep check per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The deep check: the app's own path must answer 2xx.
pub struct DeepCheck {
    path: String,
    host: String,
    last: Mutex<DeepState>,
}

#[derive(Default)]
struct DeepState {
    checked: Option<(Instant, bool)>,
    warned: Option<Instant>,
}

impl DeepCheck {
    pub fn new(path: String, host: String) -> Self {
        DeepCheck {
            path,
            host,
            last: Mutex::default(),
        }
    }

    pub async fn passes(&self, client: &UpstreamClient) -> bool {
        let mut state = self.last.lock().await;
        if let Some((at, ok)) = state.checked {
            if at.elapsed() < DEEP_CHECK_TTL {
                return ok;
            }
        }
        let outcome = self.probe(client).await;
        let ok = outcome.is_ok();
        if let Err(problem) = outcome {
            if state.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                state.warned = Some(Instant::now());
                tracing::warn!(path = %self.path, problem = %problem, "Health check of the app failed");
            }
        }
        state.checked = Some((Instant::now(), ok));
        ok
    }

    /// One request to the app's health path, through `client`.
    pub async fn probe(&self, client: &UpstreamClient) -> Result<(), String> {
        let request = Request::get(self.path.as_str())
            .header(header::HOST, &self.host)
            .header("x-forwarded-proto", "https")
            .header(header::USER_AGENT, "thrust-health-check")
            .body(body::empty())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(DEEP_CHECK_TIMEOUT, client.request(request))
            .await
            .map_err(|_| format!("no answer within {}s", DEEP_CHECK_TIMEOUT.as_secs()))?
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| format!(" to {l}"))
            .unwrap_or_default();
        let hint = match status.as_u16() {
            301 | 302 | 307 | 308 => ": a redirect usually means force_ssl does not see X-Forwarded-Proto, or the path is not excluded from it",
            403 => ": a 403 usually means host authorization does not exclude this path",
            429 => ": the app is rate limiting the health check",
            _ => "",
        };
        Err(format!("status {}{location}{hint}", status.as_u16()))
    }
}
