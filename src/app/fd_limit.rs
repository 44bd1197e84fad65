//! Open-file limit. A front server holds one descriptor per client plus one
//! per upstream connection, so the usual soft limit of 1024 is far too low;
//! thrust raises its own soft limit to the hard limit (as Go programs such
//! as Thruster do) and gives the app server back the limit it started with.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The limit thrust started with, to hand to the child unchanged.
#[derive(Clone, Copy, Debug)]
pub struct OriginalLimit {
    soft: u64,
    hard: u64,
}

/// Raises the soft open-file limit to the hard limit.
pub fn raise() -> Option<OriginalLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::debug!(error = %e, "could not raise the open-file limit");
        }
    }
    Some(OriginalLimit { soft, hard })
}

/// The soft open-file limit in force now.
pub fn current() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

impl OriginalLimit {
    /// Restores the limit; async-signal-safe, for use between fork and exec.
    pub fn restore(self) -> nix::Result<()> {
        setrlimit(Resource::RLIMIT_NOFILE, self.soft, self.hard)
    }
}
