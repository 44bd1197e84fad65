//! Child processes: spawning a copy of the app, the signals thrust relays,
//! reaping (thrust is often PID 1 in a container) and exit statuses.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};

use crate::app::fd_limit::OriginalLimit;
use crate::config::Worker;

/// Signals thrust passes on to the child. The first three also start draining.
const RELAYED: [(SignalKind, Signal); 7] = [
    (SignalKind::terminate(), Signal::SIGTERM),
    (SignalKind::interrupt(), Signal::SIGINT),
    (SignalKind::quit(), Signal::SIGQUIT),
    (SignalKind::hangup(), Signal::SIGHUP),
    (SignalKind::user_defined1(), Signal::SIGUSR1),
    (SignalKind::user_defined2(), Signal::SIGUSR2),
    (SignalKind::window_change(), Signal::SIGWINCH),
];

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{command}: command not found")]
    NotFound { command: String },
    #[error("{command}: permission denied")]
    NotExecutable { command: String },
    #[error("{command}: {source}")]
    Other { command: String, source: io::Error },
}

impl SpawnError {
    /// Exit status by shell convention.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } | SpawnError::Other { .. } => 126,
        }
    }
}

/// Finds `command` as spawning it would (PATH search unless it has a `/`),
/// without running it: `thrust check` reports what start-up would.
pub fn resolve(command: &str) -> Result<std::path::PathBuf, SpawnError> {
    use nix::unistd::{access, AccessFlags};
    use std::path::{Path, PathBuf};
    let executable = |path: &Path| path.is_file() && access(path, AccessFlags::X_OK).is_ok();
    let candidates: Vec<PathBuf> = if command.contains('/') {
        vec![PathBuf::from(command)]
    } else {
        std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(command))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(found) = candidates.iter().find(|p| executable(p)) {
        return Ok(found.clone());
    }
    let command = command.to_string();
    if candidates.iter().any(|p| p.exists()) {
        Err(SpawnError::NotExecutable { command })
    } else {
        Err(SpawnError::NotFound { command })
    }
}

/// The signals thrust watches: a child's exit, and those it relays.
pub struct Signals {
    child_exit: SignalStream,
    relayed: Vec<(SignalStream, Signal)>,
}

impl Signals {
    /// Subscribes before any child is spawned, so an instant exit or signal
    /// is not missed; and makes thrust the reaper of the app's orphans.
    pub fn subscribe() -> io::Result<Signals> {
        let child_exit = signal(SignalKind::child())?;
        let relayed = RELAYED
            .iter()
            .map(|(kind, sig)| signal(*kind).map(|stream| (stream, *sig)))
            .collect::<io::Result<Vec<_>>>()?;
        // Orphans of the app's process tree are re-parented to thrust, which
        // reaps them, so no zombie outlives its parent even when thrust is not PID 1.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::debug!(error = %e, "could not become a child subreaper");
        }
        Ok(Signals {
            child_exit,
            relayed,
        })
    }

    /// The next thing to act on: a child exited (`None`), or a signal to relay.
    pub async fn next(&mut self) -> Option<Signal> {
        let relay = futures_util::future::select_all(
            self.relayed
                .iter_mut()
                .map(|(stream, sig)| Box::pin(async move { stream.recv().await.map(|_| *sig) })),
        );
        tokio::select! {
            _ = self.child_exit.recv() => None,
            (received, _, _) = relay => received,
        }
    }
}

/// Whether a relayed signal also asks thrust to stop.
pub fn stops_thrust(sig: Signal) -> bool {
    matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)
}

/// Starts `command` in its own process group with `PORT` (or the worker
/// socket) set to `address` and stdio inherited. Must run on the main
/// thread: the child's parent-death signal is tied to the spawning thread.
pub fn spawn(
    command: &[String],
    address: &Worker,
    fd_limit: Option<OriginalLimit>,
) -> Result<Pid, SpawnError> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).process_group(0);
    // Sockets passed to thrust are thrust's: the app must not try to take them.
    for name in crate::config::SOCKET_ACTIVATION_VARIABLES {
        cmd.env_remove(name);
    }
    match address {
        Worker::Port(port) => {
            cmd.env("PORT", port.to_string());
        }
        Worker::Socket(path) => {
            cmd.env("THRUST_WORKER_SOCKET", path);
        }
    }
    // SAFETY: the closure runs between fork and exec and only calls
    // prctl(2) and setrlimit(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // If thrust itself is killed, the app must not linger.
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            if let Some(limit) = fd_limit {
                limit.restore()?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| {
        let command = command[0].clone();
        match source.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound { command },
            io::ErrorKind::PermissionDenied => SpawnError::NotExecutable { command },
            _ => SpawnError::Other { command, source },
        }
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    tracing::info!(pid = child.id(), command = %command.join(" "), "Child started");
    // Reaping happens in `reap` through waitpid; the std handle is not needed.
    drop(child);
    Ok(pid)
}

/// Sends `sig` to a child's process group: that reaches the app server even
/// when the child is a shell wrapper.
pub fn signal_group(pid: Pid, sig: Signal) -> nix::Result<()> {
    kill(Pid::from_raw(-pid.as_raw()), sig).or_else(|_| kill(pid, sig))
}

/// Reaps every exited process; returns the statuses of those in `children`
/// (other processes are the app's orphans).
pub fn reap(children: &[Pid]) -> Vec<(Pid, ExitStatus)> {
    let mut exited = Vec::new();
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::from_raw((code & 0xff) << 8)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::from_raw(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return exited,
            Ok(_) => continue,
        };
        if children.contains(&pid) {
            exited.push((pid, status));
        } else {
            tracing::debug!(pid = pid.as_raw(), status = %describe(status), "Reaped orphan");
        }
    }
}

/// thrust's own exit code for a child status: its code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        (None, None) => 1,
    }
}

pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        (None, None) => "unknown".to_string(),
    }
}
