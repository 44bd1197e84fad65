//! Socket activation (systemd's `sd_listen_fds(3)` protocol): listening
//! sockets passed by the service manager (systemd, `systemd-socket-activate`)
//! instead of bound by thrust. Descriptors start at 3; `LISTEN_FDS` counts
//! them, `LISTEN_PID` says they are for this process, and `LISTEN_FDNAMES`
//! may name them. A socket named `http` or `https` serves that port; unnamed
//! ones are taken in order, HTTP first.
//!
//! Written here rather than taken from a crate: the crates that read
//! `LISTEN_FDS` (listenfd) hand sockets out by position only, and thrust
//! needs the names to tell HTTP from HTTPS.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{getsockopt, sockopt};

/// The first passed descriptor.
const FIRST_FD: RawFd = 3;

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?}: expected a whole number")]
    Count(String),
    #[error("socket {fd} passed by LISTEN_FDS is not a listening TCP socket")]
    NotListening { fd: RawFd },
    #[error("LISTEN_FDNAMES names {name:?} twice")]
    Twice { name: String },
}

/// The sockets passed to thrust, by the port each serves.
#[derive(Debug, Default)]
pub struct Passed {
    pub http: Option<TcpListener>,
    pub https: Option<TcpListener>,
}

/// What the protocol says about this process, from an environment snapshot:
/// None when no sockets are passed to it.
fn plan(
    vars: &HashMap<String, String>,
    pid: u32,
) -> Result<Option<Vec<(RawFd, String)>>, ActivationError> {
    let for_us = vars
        .get("LISTEN_PID")
        .is_some_and(|p| p.trim().parse::<u32>().ok() == Some(pid));
    let Some(count) = vars.get("LISTEN_FDS").filter(|_| for_us) else {
        return Ok(None);
    };
    let count: RawFd = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=64).contains(n))
        .ok_or_else(|| ActivationError::Count(count.clone()))?;
    let names: Vec<&str> = vars
        .get("LISTEN_FDNAMES")
        .map(|n| n.split(':').collect())
        .unwrap_or_default();
    let named: Vec<(RawFd, String)> = (0..count)
        .map(|i| {
            let name = names.get(i as usize).copied().unwrap_or("");
            (FIRST_FD + i, name.to_ascii_lowercase())
        })
        .collect();
    Ok(Some(named))
}

/// Which port each passed socket serves: by name where the names say
/// `http` / `https`, otherwise in order.
fn assign(named: &[(RawFd, String)]) -> Result<(Option<RawFd>, Option<RawFd>), ActivationError> {
    let by_name = |wanted: &str| -> Result<Option<RawFd>, ActivationError> {
        let mut found = named.iter().filter(|(_, name)| name == wanted);
        let first = found.next().map(|(fd, _)| *fd);
        if found.next().is_some() {
            return Err(ActivationError::Twice {
                name: wanted.to_string(),
            });
        }
        Ok(first)
    };
    let (http, https) = (by_name("http")?, by_name("https")?);
    if http.is_some() || https.is_some() {
        return Ok((http, https));
    }
    let mut in_order = named.iter().map(|(fd, _)| *fd);
    Ok((in_order.next(), in_order.next()))
}

/// Takes ownership of a passed descriptor, after checking it is a listening
/// socket. It is marked close-on-exec so the app does not inherit it.
fn listener(fd: RawFd) -> Result<TcpListener, ActivationError> {
    // SAFETY: the descriptor was passed to this process by the protocol and
    // is taken exactly once; nothing else in thrust owns it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let listening = getsockopt(&listener, sockopt::AcceptConn).unwrap_or(false);
    if !listening || listener.local_addr().is_err() {
        // Not ours to close: leave the descriptor as it was passed.
        std::mem::forget(listener);
        return Err(ActivationError::NotListening { fd });
    }
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    Ok(listener)
}

/// The sockets passed to this process, if any. Call once, early: the
/// descriptors are taken over.
pub fn take(vars: &HashMap<String, String>) -> Result<Option<Passed>, ActivationError> {
    let Some(named) = plan(vars, std::process::id())? else {
        return Ok(None);
    };
    let (http, https) = assign(&named)?;
    // Sockets passed beyond the two thrust serves are not the app's to
    // inherit: they stay open in thrust (systemd holds them too) but close
    // on exec.
    for (fd, _) in named
        .iter()
        .filter(|(fd, _)| Some(*fd) != http && Some(*fd) != https)
    {
        let _ = fcntl(*fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(Some(Passed {
        http: http.map(listener).transpose()?,
        https: https.map(listener).transpose()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sockets_are_for_the_process_named_by_listen_pid() {
        let passed = vars(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "1")]);
        assert!(plan(&passed, 42).unwrap().is_some());
        assert!(plan(&passed, 43).unwrap().is_none());
        assert!(plan(&vars(&[("LISTEN_FDS", "1")]), 42).unwrap().is_none());
        assert!(plan(&vars(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "x")]), 42).is_err());
    }

    #[test]
    fn names_choose_the_port_and_order_decides_without_them() {
        let plan_of = |names: Option<&str>, count: &str| {
            let mut pairs = vec![("LISTEN_PID", "7"), ("LISTEN_FDS", count)];
            if let Some(names) = names {
                pairs.push(("LISTEN_FDNAMES", names));
            }
            plan(&vars(&pairs), 7).unwrap().unwrap()
        };
        assert_eq!(
            assign(&plan_of(Some("https:http"), "2")).unwrap(),
            (Some(4), Some(3))
        );
        assert_eq!(
            assign(&plan_of(Some("HTTP"), "1")).unwrap(),
            (Some(3), None)
        );
        assert_eq!(
            assign(&plan_of(Some("https"), "1")).unwrap(),
            (None, Some(3))
        );
        assert_eq!(assign(&plan_of(None, "2")).unwrap(), (Some(3), Some(4)));
        assert_eq!(
            assign(&plan_of(Some("web:tls"), "2")).unwrap(),
            (Some(3), Some(4))
        );
        assert_eq!(assign(&plan_of(None, "1")).unwrap(), (Some(3), None));
        assert!(assign(&plan_of(Some("http:http"), "2")).is_err());
    }
}
