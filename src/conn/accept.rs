//! Taking connections off a listener without spinning when accepting fails
//! (out of descriptors, most often): the client port, the metrics port and
//! the control socket all accept through `retrying`.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

const PAUSE_MIN: Duration = Duration::from_millis(10);
const PAUSE_MAX: Duration = Duration::from_millis(500);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The next connection `accept` gives. After a failure it waits, longer
/// each time up to `PAUSE_MAX`; the first failure is logged, then one line
/// every `WARN_EVERY` while they last, and one when accepting works again.
/// `listener` names it in those lines.
pub async fn retrying<T, F, Fut>(listener: &'static str, mut accept: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let mut pause = PAUSE_MIN;
    let mut failed = 0u64;
    let mut warned: Option<Instant> = None;
    loop {
        match accept().await {
            Ok(accepted) => {
                if failed > 0 {
                    tracing::info!(listener, failed, "Accepting connections again");
                }
                return accepted;
            }
            Err(e) => {
                failed += 1;
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(listener, error = %e, failed, retry_in_ms = pause.as_millis() as u64, "Accept failed");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(PAUSE_MAX);
            }
        }
    }
}
