//! `thrust restart`: the command talks to the running thrust over a Unix
//! socket in the abstract namespace, named after HTTP_PORT. Abstract names
//! belong to the network namespace, so inside a container only the
//! container's own processes reach it, and no file is left behind on a
//! read-only filesystem. Only the user thrust runs as, or root, is answered.
//! Signals could not be used: every one an app server might use is relayed
//! to it (Puma restarts on USR1, USR2 and HUP).
//!
//! The exchange is lines of text: the command sends `restart`; thrust
//! answers with `progress …` lines and ends with `done …` or `failed …`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener as StdListener, UnixStream as StdStream};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// How long a connected command has to say what it wants.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

fn address(http_port: u16) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("thrust-control-{http_port}"))
}

/// The socket the running thrust listens on for `thrust restart`.
pub fn listen(http_port: u16) -> io::Result<UnixListener> {
    let listener = StdListener::bind_addr(&address(http_port)?)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// Accepts commands for as long as thrust runs, handing restarts to `restarts`.
pub async fn serve(listener: UnixListener, restarts: mpsc::Sender<RestartRequest>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "Control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
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
    let mut line = String::new();
    let mut reader = AsyncBufReader::new(read).take(64);
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if !allowed(uid) {
        tracing::warn!(uid, "Control socket: refused a command from another user");
        let _ = write
            .write_all(b"failed only the user thrust runs as, or root, may control it\n")
            .await;
        return;
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

/// `thrust restart`: asks the thrust serving `http_port` to restart the app,
/// prints what it reports, and returns the exit code (0 once the new copy
/// serves).
pub fn request_restart(http_port: u16) -> u8 {
    let stream = match address(http_port).and_then(|a| StdStream::connect_addr(&a)) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!(
                "thrust restart: no thrust serving HTTP_PORT={http_port} answers here ({e}); \
                 run it where thrust runs (e.g. docker exec), with the same HTTP_PORT"
            );
            return 1;
        }
    };
    // A refusal may already be waiting to be read even if the write failed.
    let _ = (&stream).write_all(b"restart\n");
    for line in BufReader::new(&stream).lines() {
        let Ok(line) = line else { break };
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
