//! THRUST_RESTART=on-failure: how long to wait before starting a failed app
//! again, and when to stop trying.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::RestartPolicy;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const LONGEST_DELAY: Duration = Duration::from_secs(30);

/// What to do after the app failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Start it again after this pause.
    RestartIn(Duration),
    /// `failures` within the window reached the limit.
    GiveUp { failures: usize },
}

/// The failures within the policy's window.
pub struct CrashHistory {
    policy: RestartPolicy,
    failures: VecDeque<Instant>,
}

impl CrashHistory {
    pub fn new(policy: RestartPolicy) -> Self {
        CrashHistory {
            policy,
            failures: VecDeque::new(),
        }
    }

    /// Records a failure at `now`. The pause doubles with each failure still
    /// in the window, so an app that crashed long ago comes back at once and
    /// one in a crash loop is not restarted in a tight loop.
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        while let Some(&first) = self.failures.front() {
            if now.duration_since(first) < self.policy.window {
                break;
            }
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        let failures = self.failures.len();
        if failures >= self.policy.limit as usize {
            return AfterFailure::GiveUp { failures };
        }
        let doublings = u32::try_from(failures - 1).unwrap_or(u32::MAX).min(16);
        AfterFailure::RestartIn((FIRST_DELAY * 2u32.pow(doublings)).min(LONGEST_DELAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(limit: u32, window_s: u64) -> CrashHistory {
        CrashHistory::new(RestartPolicy {
            on_failure: true,
            limit,
            window: Duration::from_secs(window_s),
        })
    }

    #[test]
    fn the_pause_doubles_from_100_ms_up_to_30_s() {
        let mut crashes = history(100, 3600);
        let start = Instant::now();
        let pauses: Vec<Duration> = (0..12)
            .map(|i| match crashes.failed(start + Duration::from_secs(i)) {
                AfterFailure::RestartIn(pause) => pause,
                other => panic!("{other:?}"),
            })
            .collect();
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
    }

    #[test]
    fn the_limit_within_the_window_gives_up() {
        let mut crashes = history(3, 60);
        let start = Instant::now();
        assert!(matches!(crashes.failed(start), AfterFailure::RestartIn(_)));
        assert!(matches!(
            crashes.failed(start + Duration::from_secs(10)),
            AfterFailure::RestartIn(_)
        ));
        assert_eq!(
            crashes.failed(start + Duration::from_secs(20)),
            AfterFailure::GiveUp { failures: 3 }
        );
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut crashes = history(3, 60);
        let start = Instant::now();
        crashes.failed(start);
        crashes.failed(start + Duration::from_secs(10));
        // The first two are out of the window: this counts as the first again.
        assert_eq!(
            crashes.failed(start + Duration::from_secs(75)),
            AfterFailure::RestartIn(Duration::from_millis(100))
        );
    }
}
