//! `thrust restart`: the command talks to the running thrust over a Unix
//! socket: a file when THRUST_CONTROL_SOCKET names one (the deb's unit puts
//! it in a private RuntimeDirectory), else a name in the abstract namespace
//! after the HTTP port thrust actually bound. Abstract names belong to the
//! network namespace, so inside a container only the container's own
//! processes reach it, and no file is left behind on a read-only
//! filesystem; on a shared host any local user could take the name first,
//! which is why both ends check who is on the other side.
//! Signals could not be used: every one an app server might use is relayed
//! to it (Puma restarts on USR1, USR2 and HUP).
//!
//! The exchange is lines of text: the command sends `restart`; thrust
//! answers with `progress …` lines and ends with `done …` or `failed …`.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::app::ports::listening_addresses;
use crate::config::Config;
use crate::conn::accept;

/// How long a connected command has to say what it wants.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Beyond the restart's own limits, how long the command waits for a line.
const REPLY_MARGIN: Duration = Duration::from_secs(5);

/// What thrust tells the command while a restart runs.
#[derive(Debug)]
pub enum Reply {
    Progress(String),
    Done(String),
    Failed(String),
}

/// A `thrust restart` waiting for its outcome.
pub struct RestartRequest {
    pub reply: mpsc::UnboundedSender<Reply>,
}

impl RestartRequest {
    pub fn progress(&self, text: impl Into<String>) {
        // The command may have gone away (Ctrl-C): the restart goes on.
        let _ = self.reply.send(Reply::Progress(text.into()));
    }

    pub fn done(&self, text: impl Into<String>) {
        let _ = self.reply.send(Reply::Done(text.into()));
    }

    pub fn failed(&self, text: impl Into<String>) {
        let _ = self.reply.send(Reply::Failed(text.into()));
    }
}

/// Where the control socket is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlAddress {
    /// THRUST_CONTROL_SOCKET: a socket file, created 0600.
    File(PathBuf),
    /// `thrust-control-<port>` in the abstract namespace.
    Abstract(u16),
}

impl ControlAddress {
    /// For the thrust that bound `http_port`, or for the command, which
    /// reads the same configuration.
    pub fn of(config: &Config, http_port: u16) -> Self {
        match &config.control_socket {
            Some(path) => ControlAddress::File(path.clone()),
            None => ControlAddress::Abstract(http_port),
        }
    }

    fn socket_address(&self) -> io::Result<SocketAddr> {
        match self {
            ControlAddress::File(path) => SocketAddr::from_pathname(path),
            ControlAddress::Abstract(port) => {
                SocketAddr::from_abstract_name(format!("thrust-control-{port}"))
            }
        }
    }
}

impl fmt::Display for ControlAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlAddress::File(path) => write!(f, "{}", path.display()),
            ControlAddress::Abstract(port) => write!(f, "@thrust-control-{port}"),
        }
    }
}

/// Who is at the other end of a Unix socket.
fn peer(stream: &impl AsFd) -> io::Result<(u32, i32)> {
    let cred = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
    Ok((cred.uid(), cred.pid()))
}

/// The socket the running thrust listens on for `thrust restart`. A name
/// already held is reported with who holds it: `thrust restart` will not
/// talk to another user's socket.
pub fn listen(address: &ControlAddress) -> io::Result<UnixListener> {
    if let ControlAddress::File(path) = address {
        remove_stale(path);
    }
    let listener = match StdListener::bind_addr(&address.socket_address()?) {
        Ok(listener) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let holder = StdStream::connect_addr(&address.socket_address()?)
                .and_then(|stream| peer(&stream));
            let text = match holder {
                Ok((uid, pid)) => format!("{address} is held by uid {uid} (pid {pid})"),
                Err(_) => format!("{address} is in use"),
            };
            return Err(io::Error::new(io::ErrorKind::AddrInUse, text));
        }
        Err(e) => return Err(e),
    };
    if let ControlAddress::File(path) = address {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// A socket file left by a thrust that is gone (nothing accepts on it) is
/// removed; a live one is left for `bind` to report.
fn remove_stale(path: &Path) {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket
        && StdStream::connect(path).is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Accepts commands for as long as thrust runs, handing restarts to `restarts`.
pub async fn serve(listener: UnixListener, restarts: mpsc::Sender<RestartRequest>) {
    loop {
        let (stream, _) = accept::retrying("control", || listener.accept()).await;
        tokio::spawn(answer(stream, restarts.clone()));
    }
}

/// Whether a peer's user may control thrust: the same user, or root.
fn allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

async fn answer(stream: UnixStream, restarts: mpsc::Sender<RestartRequest>) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(_) => return,
    };
    let (read, mut write) = stream.into_split();
    // Who it is decides before anything it sent is read. The refusal stays
    // readable after the close (a Unix socket delivers queued data first).
    if !allowed(uid) {
        tracing::warn!(uid, "Control socket: refused a command from another user");
        let _ = write
            .write_all(b"failed only the user thrust runs as, or root, may control it\n")
            .await;
        return;
    }
    let mut line = String::new();
    let mut reader = AsyncBufReader::new(read).take(64);
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if line.trim() != "restart" {
        let _ = write.write_all(b"failed unknown command\n").await;
        return;
    }
    let (reply, mut replies) = mpsc::unbounded_channel();
    if restarts.send(RestartRequest { reply }).await.is_err() {
        let _ = write.write_all(b"failed thrust is stopping\n").await;
        return;
    }
    // Ends when the restart is over and its sender is dropped.
    while let Some(reply) = replies.recv().await {
        let line = match reply {
            Reply::Progress(text) => format!("progress {text}\n"),
            Reply::Done(text) => format!("done {text}\n"),
            Reply::Failed(text) => format!("failed {text}\n"),
        };
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Whether the command may believe what answers at `address`: a thrust of
/// its own user or root's. A root command also accepts another user's
/// thrust, as long as that process is the one listening on HTTP_PORT (a
/// user who merely took the socket's name first is not).
fn trustworthy(address: &ControlAddress, http_port: u16, uid: u32, pid: i32) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    if uid == me || uid == 0 {
        return true;
    }
    me == 0
        && match address {
            // The socket file is where the service's configuration put it.
            ControlAddress::File(path) => {
                std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == uid)
            }
            ControlAddress::Abstract(_) => u32::try_from(pid).is_ok_and(|pid| {
                listening_addresses(pid)
                    .iter()
                    .any(|addr| addr.port() == http_port)
            }),
        }
}

/// `thrust restart`: asks the running thrust to restart the app, prints what
/// it reports, and returns the exit code (0 once the new copy serves).
pub fn request_restart(config: &Config) -> u8 {
    let address = ControlAddress::of(config, config.http_port);
    let stream = match address
        .socket_address()
        .and_then(|a| StdStream::connect_addr(&a))
    {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!(
                "thrust restart: no thrust serving HTTP_PORT={} answers at {address} ({e}); \
                 run it where thrust runs (e.g. docker exec), with the same HTTP_PORT \
                 (or THRUST_CONTROL_SOCKET)",
                config.http_port
            );
            return 1;
        }
    };
    match peer(&stream) {
        Ok((uid, pid)) if trustworthy(&address, config.http_port, uid, pid) => {}
        Ok((uid, pid)) => {
            eprintln!(
                "thrust restart: {address} is held by uid {uid} (pid {pid}), which is not \
                 the thrust serving HTTP_PORT={}; not talking to it",
                config.http_port
            );
            return 1;
        }
        Err(e) => {
            eprintln!("thrust restart: cannot tell who answers at {address} ({e})");
            return 1;
        }
    }
    // Between two lines thrust may boot the new copy and drain the old one.
    let patience = config.restart_boot_timeout + config.shutdown_timeout * 2 + REPLY_MARGIN;
    if let Err(e) = stream.set_read_timeout(Some(patience)) {
        eprintln!("thrust restart: {e}");
        return 1;
    }
    // A refusal may already be waiting to be read even if the write failed.
    let _ = (&stream).write_all(b"restart\n");
    for line in BufReader::new(&stream).lines() {
        let line = match line {
            Ok(line) => line,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                eprintln!(
                    "thrust restart: thrust said nothing for {} s; giving up waiting (the restart may still finish)",
                    patience.as_secs()
                );
                return 1;
            }
            Err(_) => break,
        };
        let (kind, text) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match kind {
            "progress" => println!("{text}"),
            "done" => {
                println!("{text}");
                return 0;
            }
            "failed" => {
                eprintln!("thrust restart: {text}");
                return 1;
            }
            _ => {}
        }
    }
    eprintln!("thrust restart: thrust closed the connection before the restart finished");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_or_root_may_control_thrust() {
        let me = nix::unistd::geteuid().as_raw();
        assert!(allowed(me));
        assert!(allowed(0));
        assert!(!allowed(me.wrapping_add(12345).max(1)));
    }
}
