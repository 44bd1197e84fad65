//! One warning per period for a condition that can repeat thousands of
//! times a second (a flood, a misconfigured client): shared across workers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: Mutex::new(None),
        }
    }

    /// True at most once per period: the caller warns now.
    pub fn due(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let due = last.is_none_or(|at| at.elapsed() >= self.every);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_period() {
        let throttle = Throttle::new(Duration::from_secs(60));
        assert!(throttle.due());
        assert!(!throttle.due());
        assert!(Throttle::new(Duration::ZERO).due());
    }
}
