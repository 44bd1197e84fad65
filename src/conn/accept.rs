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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_after_growing_pauses_up_to_the_longest() {
        let started = tokio::time::Instant::now();
        let mut failures = 0;
        let accepted = retrying("test", || {
            failures += 1;
            let outcome = match failures {
                1..=7 => Err(io::Error::other("too many open files")),
                _ => Ok(failures),
            };
            std::future::ready(outcome)
        })
        .await;
        assert_eq!(accepted, 8);
        // 10 + 20 + 40 + 80 + 160 + 320 ms, then the longest pause, 500 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(1130));
    }
}
