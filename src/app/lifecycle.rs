//! The app's life under thrust, on the main thread: the running copy,
//! starting a failed copy again (THRUST_RESTART=on-failure), and
//! `thrust restart`, which starts a second copy on a spare port, sends new
//! requests to it once it is ready, and stops the old copy once the requests
//! it was serving are done.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::app::app_connections::AppConnections;
use crate::app::control_socket::RestartRequest;
use crate::app::crash_history::{AfterFailure, CrashHistory};
use crate::app::deep_check::DeepCheck;
use crate::app::fd_limit::OriginalLimit;
use crate::app::readiness::Readiness;
use crate::app::supervisor::{self, describe, Signals, SpawnError};
use crate::app::target::{AppCopy, AppTarget};
use crate::app::upstream::{self, UpstreamClient};
use crate::config::{Config, Worker};
use crate::metrics::{Metrics, RestartReason};

/// How often a new copy is asked whether it is ready, once it accepts.
const READY_RETRY: Duration = Duration::from_millis(50);
/// How long a new copy has to answer that request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an old copy's open connections are counted while it drains.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The copy requests go to.
enum Running {
    Up {
        pid: Pid,
        /// Marks the app ready once it accepts (None: it was ready when it
        /// took over).
        watcher: Option<JoinHandle<()>>,
    },
    /// Failed; started again at `restart_at`.
    Down {
        status: ExitStatus,
        restart_at: tokio::time::Instant,
    },
}

/// A second copy booting for `thrust restart`.
struct Replacement {
    pid: Pid,
    copy: Arc<AppCopy>,
    request: RestartRequest,
    started: Instant,
    /// Ok once the copy accepts (and passes the deep check); Err: why not.
    ready: JoinHandle<Result<(), String>>,
}

/// What the next turn of the loop acts on.
enum Event {
    ChildExited,
    Signal(Signal),
    RestartRequested(RestartRequest),
    ReplacementReady(Result<(), String>),
    RestartDue,
}

/// Everything the lifecycle needs from the rest of thrust.
pub struct Wiring {
    pub config: Arc<Config>,
    pub readiness: Arc<Readiness>,
    pub target: Arc<AppTarget>,
    /// Every worker's pool and runtime: connections to a new copy are
    /// opened ahead on them, and idle ones to a replaced copy closed.
    pub pools: Vec<(Handle, UpstreamClient)>,
    /// How a copy started by `thrust restart` shows it is ready.
    pub ready_check: ReadyCheck,
    pub restarts: mpsc::Receiver<RestartRequest>,
    pub metrics: Option<Arc<Metrics>>,
}

pub struct Lifecycle {
    command: Vec<String>,
    fd_limit: Option<OriginalLimit>,
    signals: Signals,
    wiring: Wiring,
    running: Running,
    replacement: Option<Replacement>,
    /// Copies on their way out: where they listened, and who to tell when
    /// they have exited.
    retiring: Vec<(Pid, Worker, oneshot::Sender<()>)>,
    crashes: CrashHistory,
    /// Copies started by `thrust restart`, to name their sockets.
    replacements_started: u64,
}

impl Lifecycle {
    /// Starts the first copy of the app at the target's address.
    pub fn start(
        command: Vec<String>,
        fd_limit: Option<OriginalLimit>,
        wiring: Wiring,
    ) -> Result<Lifecycle, SpawnError> {
        let signals = Signals::subscribe().map_err(|source| SpawnError::Other {
            command: command[0].clone(),
            source,
        })?;
        let address = wiring.target.current().address.clone();
        let pid = supervisor::spawn(&command, &address, fd_limit)?;
        let watcher = Some(watch(&wiring.readiness, address, pid));
        Ok(Lifecycle {
            command,
            fd_limit,
            signals,
            crashes: CrashHistory::new(wiring.config.restart),
            wiring,
            running: Running::Up { pid, watcher },
            replacement: None,
            retiring: Vec::new(),
            replacements_started: 0,
        })
    }

    /// Runs until thrust should stop; returns the app's exit status.
    pub async fn run(mut self) -> ExitStatus {
        loop {
            for (pid, status) in supervisor::reap(&self.children()) {
                if let Some(status) = self.exited(pid, status) {
                    return status;
                }
            }
            let event = tokio::select! {
                received = self.signals.next() => match received {
                    Some(sig) => Event::Signal(sig),
                    None => Event::ChildExited,
                },
                Some(request) = self.wiring.restarts.recv() => Event::RestartRequested(request),
                outcome = replacement_outcome(&mut self.replacement) => Event::ReplacementReady(outcome),
                () = restart_due(&self.running) => Event::RestartDue,
            };
            match event {
                Event::ChildExited => {}
                Event::Signal(sig) => {
                    if let Some(status) = self.relay(sig) {
                        return status;
                    }
                }
                Event::RestartRequested(request) => self.start_replacement(request),
                Event::ReplacementReady(outcome) => self.replacement_finished(outcome),
                Event::RestartDue => self.start_again(),
            }
        }
    }

    fn children(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self.retiring.iter().map(|(pid, ..)| *pid).collect();
        if let Running::Up { pid, .. } = &self.running {
            pids.push(*pid);
        }
        if let Some(replacement) = &self.replacement {
            pids.push(replacement.pid);
        }
        pids
    }

    /// Acts on a child's exit; returns the status thrust exits with when it
    /// is time to stop.
    fn exited(&mut self, pid: Pid, status: ExitStatus) -> Option<ExitStatus> {
        if let Some(index) = self.retiring.iter().position(|(p, ..)| *p == pid) {
            let (_, address, exited) = self.retiring.swap_remove(index);
            let _ = exited.send(());
            remove_socket(&address);
            tracing::info!(pid = pid.as_raw(), status = %describe(status), "Previous copy of the app exited");
            return None;
        }
        if self.replacement.as_ref().is_some_and(|r| r.pid == pid) {
            self.replacement_exited(pid, status);
            return None;
        }
        match &self.running {
            Running::Up {
                pid: running,
                watcher,
            } if *running == pid => {
                if let Some(watcher) = watcher {
                    watcher.abort();
                }
                self.running_exited(pid, status)
            }
            _ => None,
        }
    }

    /// The copy booting for `thrust restart` exited before it was ready.
    fn replacement_exited(&mut self, pid: Pid, status: ExitStatus) {
        let Some(replacement) = self.replacement.take() else {
            return;
        };
        replacement.ready.abort();
        remove_socket(&replacement.copy.address);
        if self.wiring.readiness.is_draining() {
            // Stopped with the running copy by a stop signal.
            tracing::info!(pid = pid.as_raw(), status = %describe(status), "Restart abandoned: thrust is stopping");
            replacement
                .request
                .failed("thrust is stopping: the new copy was stopped with the running one");
            return;
        }
        let problem = format!(
            "the new copy exited before it was ready ({})",
            describe(status)
        );
        tracing::error!(pid = pid.as_raw(), status = %describe(status), "Restart failed: the new copy of the app exited before it was ready; the running copy keeps serving");
        replacement
            .request
            .failed(format!("{problem}; the running copy keeps serving"));
    }

    /// The running copy exited: a restart's new copy takes over, or it is
    /// started again (THRUST_RESTART=on-failure), or thrust stops.
    fn running_exited(&mut self, pid: Pid, status: ExitStatus) -> Option<ExitStatus> {
        let was_ready = self.wiring.readiness.is_ready();
        if self.wiring.readiness.is_draining() {
            return Some(self.stop(status, was_ready));
        }
        if let Some(replacement) = self.replacement.take() {
            self.take_over(replacement, pid, status);
            return None;
        }
        if status.success() || !self.wiring.config.restart.on_failure {
            return Some(self.stop(status, was_ready));
        }
        self.failed(pid, status)
    }

    /// The copy booting for `thrust restart` takes over as it becomes ready.
    fn take_over(&mut self, replacement: Replacement, pid: Pid, status: ExitStatus) {
        replacement.ready.abort();
        tracing::warn!(pid = pid.as_raw(), status = %describe(status), new_pid = replacement.pid.as_raw(), "Child exited during a restart: the new copy takes over once it is ready");
        replacement.request.done(format!(
            "the running copy exited ({}); the new copy (pid {}) takes requests once it is ready",
            describe(status),
            replacement.pid
        ));
        self.wiring.readiness.set_starting();
        let address = replacement.copy.address.clone();
        self.switch_to(replacement.copy);
        self.running = Running::Up {
            pid: replacement.pid,
            watcher: Some(watch(&self.wiring.readiness, address, replacement.pid)),
        };
    }

    /// THRUST_RESTART=on-failure: start it again after a pause, or give up.
    fn failed(&mut self, pid: Pid, status: ExitStatus) -> Option<ExitStatus> {
        let readiness = &self.wiring.readiness;
        match self.crashes.failed(Instant::now()) {
            AfterFailure::RestartIn(pause) => {
                tracing::warn!(
                    pid = pid.as_raw(),
                    status = %describe(status),
                    restart_in_ms = pause.as_millis() as u64,
                    "Child failed: starting it again (THRUST_RESTART=on-failure)"
                );
                readiness.set_starting();
                self.running = Running::Down {
                    status,
                    restart_at: tokio::time::Instant::now() + pause,
                };
                None
            }
            AfterFailure::GiveUp { failures } => {
                tracing::error!(
                    pid = pid.as_raw(),
                    status = %describe(status),
                    failures,
                    window_s = self.wiring.config.restart.window.as_secs(),
                    "Child failed {failures} times within THRUST_RESTART_WINDOW: giving up"
                );
                readiness.set_child_gone();
                Some(status)
            }
        }
    }

    /// The app exited and is not started again: thrust stops too.
    fn stop(&self, status: ExitStatus, was_ready: bool) -> ExitStatus {
        self.wiring.readiness.set_child_gone();
        if was_ready {
            tracing::info!(status = %describe(status), "Child exited");
        } else {
            tracing::error!(
                status = %describe(status),
                "Child exited before it was ever ready: it never accepted connections on its port"
            );
        }
        status
    }

    /// Passes a signal on. Stopping signals go to every copy; the others
    /// (an app server's own restart signals) to the running copy only.
    fn relay(&mut self, sig: Signal) -> Option<ExitStatus> {
        let stopping = supervisor::stops_thrust(sig);
        if stopping {
            self.wiring.readiness.set_draining();
        }
        let targets: Vec<Pid> = if stopping {
            self.children()
        } else {
            match &self.running {
                Running::Up { pid, .. } => vec![*pid],
                Running::Down { .. } => Vec::new(),
            }
        };
        for pid in targets {
            match supervisor::signal_group(pid, sig) {
                Ok(()) => {
                    tracing::info!(signal = %sig, pid = pid.as_raw(), "Signal relayed to child")
                }
                Err(e) => {
                    tracing::warn!(signal = %sig, pid = pid.as_raw(), error = %e, "Could not relay signal to child")
                }
            }
        }
        match &self.running {
            // Nothing runs to drain: stop now, with the status of the last failure.
            Running::Down { status, .. } if stopping => {
                self.wiring.readiness.set_child_gone();
                Some(*status)
            }
            _ => None,
        }
    }

    /// THRUST_RESTART=on-failure: the back-off is over.
    fn start_again(&mut self) {
        let Running::Down { status, .. } = self.running else {
            return;
        };
        let address = self.wiring.target.current().address.clone();
        match supervisor::spawn(&self.command, &address, self.fd_limit) {
            Ok(pid) => {
                self.counted(RestartReason::Failure);
                self.running = Running::Up {
                    pid,
                    watcher: Some(watch(&self.wiring.readiness, address, pid)),
                };
            }
            Err(e) => {
                // Counted as another failure, with the pause growing.
                tracing::error!(error = %e, "Could not start the app again");
                let pause = match self.crashes.failed(Instant::now()) {
                    AfterFailure::RestartIn(pause) => pause,
                    AfterFailure::GiveUp { .. } => Duration::ZERO,
                };
                self.running = Running::Down {
                    status,
                    restart_at: tokio::time::Instant::now() + pause.max(Duration::from_secs(1)),
                };
            }
        }
    }

    /// `thrust restart`: starts the new copy.
    fn start_replacement(&mut self, request: RestartRequest) {
        let refusal = if self.wiring.readiness.is_draining() {
            Some("thrust is stopping")
        } else if self.replacement.is_some() {
            Some("a restart is already in progress")
        } else if matches!(self.running, Running::Down { .. }) {
            Some("the app is down after a failure and is being started again")
        } else if !self.wiring.readiness.is_ready() {
            Some("the app is still starting")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            request.failed(refusal);
            return;
        }
        let address = match self.spare_address() {
            Ok(address) => address,
            Err(e) => {
                tracing::error!(error = %e, "Restart failed: no spare port for the new copy");
                request.failed(format!("no spare port for the new copy: {e}"));
                return;
            }
        };
        let pid = match supervisor::spawn(&self.command, &address, self.fd_limit) {
            Ok(pid) => pid,
            Err(e) => {
                tracing::error!(error = %e, "Restart failed: the new copy could not be started");
                request.failed(format!("the new copy could not be started: {e}"));
                return;
            }
        };
        self.replacements_started += 1;
        tracing::info!(pid = pid.as_raw(), address = %show(&address), "Restart: new copy of the app started");
        request.progress(format!(
            "started a new copy of the app (pid {pid}) on {}; waiting until it is ready",
            show(&address)
        ));
        let copy = self.wiring.target.prepare(address.clone());
        let check = self.wiring.ready_check.clone();
        let limit = self.wiring.config.restart_boot_timeout;
        let (target, pools) = (self.wiring.target.clone(), self.wiring.pools.clone());
        let next = copy.clone();
        let ready = tokio::spawn(async move {
            until_ready(address, pid, check, limit).await?;
            open_ahead(&target, next, &pools).await;
            Ok(())
        });
        self.replacement = Some(Replacement {
            pid,
            copy,
            request,
            started: Instant::now(),
            ready,
        });
    }

    fn spare_address(&self) -> std::io::Result<Worker> {
        match &self.wiring.config.worker {
            Worker::Port(_) => {
                // The kernel's choice of a free port; released for the app to bind.
                let probe = std::net::TcpListener::bind(("127.0.0.1", 0))?;
                Ok(Worker::Port(probe.local_addr()?.port()))
            }
            Worker::Socket(original) => {
                let mut path = original.clone().into_os_string();
                path.push(format!(".{}", self.replacements_started + 1));
                Ok(Worker::Socket(path.into()))
            }
        }
    }

    fn replacement_finished(&mut self, outcome: Result<(), String>) {
        let Some(replacement) = self.replacement.take() else {
            return;
        };
        let new_pid = replacement.pid;
        match outcome {
            Ok(()) => {
                let Running::Up { pid: old_pid, .. } = self.running else {
                    return;
                };
                let previous = self.switch_to(replacement.copy);
                self.counted(RestartReason::Command);
                let in_flight = previous.open_connections();
                tracing::info!(
                    pid = new_pid.as_raw(),
                    previous_pid = old_pid.as_raw(),
                    after_ms = replacement.started.elapsed().as_millis() as u64,
                    previous_open_connections = in_flight,
                    "Restart: the new copy takes new requests; the previous copy stops once its requests are done"
                );
                replacement.request.done(format!(
                    "the new copy (pid {new_pid}) takes new requests; the previous copy (pid {old_pid}) \
                     stops once its {in_flight} open connections are done (at most THRUST_SHUTDOWN_TIMEOUT)"
                ));
                self.running = Running::Up {
                    pid: new_pid,
                    watcher: None,
                };
                self.retire(old_pid, previous, true);
            }
            Err(problem) => {
                tracing::error!(pid = new_pid.as_raw(), problem = %problem, "Restart failed: the new copy did not become ready; the running copy keeps serving");
                replacement
                    .request
                    .failed(format!("{problem}; the running copy keeps serving"));
                for (_, pool) in &self.wiring.pools {
                    pool.close_all_but_current();
                }
                self.retire(new_pid, replacement.copy, false);
            }
        }
    }

    fn counted(&self, reason: RestartReason) {
        if let Some(metrics) = &self.wiring.metrics {
            metrics.app_restarted(reason);
        }
    }

    /// Sends new connections to `copy` and closes idle ones to the copy before.
    fn switch_to(&self, copy: Arc<AppCopy>) -> Arc<AppCopy> {
        let previous = self.wiring.target.switch_to(copy);
        for (_, pool) in &self.wiring.pools {
            pool.close_all_but_current();
        }
        previous
    }

    /// Stops a copy: once `copy`'s connections are done (at most
    /// THRUST_SHUTDOWN_TIMEOUT) when `drain`, SIGTERM; SIGKILL if it has not
    /// exited THRUST_SHUTDOWN_TIMEOUT later.
    fn retire(&mut self, pid: Pid, copy: Arc<AppCopy>, drain: bool) {
        let (exited_tx, exited) = oneshot::channel();
        self.retiring.push((pid, copy.address.clone(), exited_tx));
        let grace = self.wiring.config.shutdown_timeout;
        tokio::spawn(async move {
            if drain {
                let deadline = Instant::now() + grace;
                while copy.open_connections() > 0 && Instant::now() < deadline {
                    tokio::time::sleep(DRAIN_POLL).await;
                }
            }
            if let Err(e) = supervisor::signal_group(pid, Signal::SIGTERM) {
                tracing::warn!(pid = pid.as_raw(), error = %e, "Could not stop the previous copy of the app");
            }
            if tokio::time::timeout(grace, exited).await.is_err() {
                tracing::warn!(
                    pid = pid.as_raw(),
                    "Previous copy of the app still running THRUST_SHUTDOWN_TIMEOUT after SIGTERM: killed"
                );
                let _ = supervisor::signal_group(pid, Signal::SIGKILL);
            }
        });
    }
}

/// Removes the socket file a stopped copy listened on: every restart gives
/// the new copy a path of its own, and app servers that do not remove
/// theirs on exit would otherwise leave one file per restart.
fn remove_socket(address: &Worker) {
    if let Worker::Socket(path) = address {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Could not remove the socket of a stopped copy of the app")
            }
        }
    }
}

/// Watches the running copy until it accepts, then marks the app ready.
fn watch(readiness: &Arc<Readiness>, address: Worker, pid: Pid) -> JoinHandle<()> {
    let readiness = readiness.clone();
    tokio::spawn(async move { readiness.watch_worker(address, pid.as_raw() as u32).await })
}

/// Waits until a new copy answers HTTP: the deep health check when one is
/// configured, otherwise any answer to a request for the health path.
/// Accepting connections is not enough: Puma listens before it has loaded
/// the app, and requests sent then wait in its listen queue until it has.
async fn until_ready(
    address: Worker,
    pid: Pid,
    check: ReadyCheck,
    limit: Duration,
) -> Result<(), String> {
    let mut last_problem = None;
    let ready = async {
        Readiness::default()
            .watch_worker(address.clone(), pid.as_raw() as u32)
            .await;
        // One check at a time: one place at the app.
        let client = upstream::client(AppTarget::new(address.clone()), AppConnections::new(1));
        loop {
            let outcome = match &check {
                ReadyCheck::Deep(deep_check) => deep_check.probe(&client).await,
                ReadyCheck::Answers(path) => answers(&client, path).await,
            };
            match outcome {
                Ok(()) => return,
                Err(problem) => last_problem = Some(problem),
            }
            tokio::time::sleep(READY_RETRY).await;
        }
    };
    let outcome = tokio::time::timeout(limit, ready).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(_) => Err(match last_problem {
            Some(problem) => format!(
                "the new copy was not ready within THRUST_RESTART_BOOT_TIMEOUT ({} s): {problem}",
                limit.as_secs()
            ),
            None => format!(
                "the new copy did not accept connections on {} within THRUST_RESTART_BOOT_TIMEOUT ({} s)",
                show(&address),
                limit.as_secs()
            ),
        }),
    }
}

/// How a new copy shows it is ready.
#[derive(Clone)]
pub enum ReadyCheck {
    /// THRUST_HEALTH_UPSTREAM_PATH answers 2xx.
    Deep(Arc<DeepCheck>),
    /// This path gets an answer, whatever its status (a 301 from force_ssl
    /// or a 404 shows the app serves as well as a 200 does).
    Answers(String),
}

async fn answers(client: &UpstreamClient, path: &str) -> Result<(), String> {
    let request = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::USER_AGENT, "thrust-restart-check")
        .body(crate::http::body::empty())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(ANSWER_TIMEOUT, client.request(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{path}: {e}")),
        Err(_) => Err(format!(
            "{path}: no answer within {} s",
            ANSWER_TIMEOUT.as_secs()
        )),
    }
}

/// Opens connections to the new copy on every worker, as many in all as the
/// running copy has open (at least one per worker), before the switch.
async fn open_ahead(target: &AppTarget, copy: Arc<AppCopy>, pools: &[(Handle, UpstreamClient)]) {
    let per_pool = target
        .current()
        .open_connections()
        .div_ceil(pools.len().max(1))
        .max(1);
    let opening: Vec<_> = pools
        .iter()
        .map(|(handle, pool)| {
            let (pool, copy) = (pool.clone(), copy.clone());
            handle.spawn(async move { pool.open_ahead(copy, per_pool).await })
        })
        .collect();
    let opened: usize = futures_util::future::join_all(opening)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .sum();
    tracing::debug!(opened, "Restart: connections to the new copy opened ahead");
}

async fn replacement_outcome(replacement: &mut Option<Replacement>) -> Result<(), String> {
    match replacement {
        Some(replacement) => (&mut replacement.ready)
            .await
            .unwrap_or_else(|e| Err(format!("the readiness check stopped: {e}"))),
        None => std::future::pending().await,
    }
}

async fn restart_due(running: &Running) {
    match running {
        Running::Down { restart_at, .. } => tokio::time::sleep_until(*restart_at).await,
        Running::Up { .. } => std::future::pending().await,
    }
}

fn show(address: &Worker) -> String {
    match address {
        Worker::Port(port) => format!("127.0.0.1:{port}"),
        Worker::Socket(path) => format!("unix:{}", path.display()),
    }
}
