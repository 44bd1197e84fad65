//! The entrypoint's duties: PORT, stdio, signals, draining, reaping (SPEC §3).

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn app_command(script: &str) -> Options<'static> {
    let script = script.replace("APP", &format!("python3 {}", app_script().display()));
    Options::command(&["sh", "-c", &script])
}

#[test]
fn child_gets_port_and_inherits_stdout() {
    let t = Thrust::start_ready(app_command("echo \"child sees PORT=$PORT\"; exec APP"));
    assert!(t
        .log_text()
        .contains(&format!("child sees PORT={}", t.worker_port)));
    assert_eq!(get(t.port, "/").unwrap().text(), "hello from app\n");
}

#[test]
fn signals_are_relayed_to_the_child() {
    let mut t = Thrust::start_ready(Options::app());
    for sig in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH] {
        t.signal(sig);
        let recorded = wait_until(Duration::from_secs(5), || {
            t.app_entries().iter().any(|e| e["signal"] == sig as i32)
        });
        assert!(recorded, "app never got {sig}");
        assert!(t
            .wait_log(Duration::from_secs(2), |l| l["msg"]
                == "Signal relayed to child"
                && l["signal"] == sig.as_str())
            .is_some());
    }
    // Plain HUP makes the test app exit cleanly; thrust follows with its status.
    t.signal(Signal::SIGHUP);
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(t
        .app_entries()
        .iter()
        .any(|e| e["signal"] == Signal::SIGHUP as i32));
    let exited = t
        .log_lines()
        .into_iter()
        .find(|l| l["msg"] == "Child exited")
        .unwrap();
    assert_eq!(exited["status"], "exit code 0");
}

#[test]
fn term_int_and_quit_drain_then_exit_with_the_childs_status() {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        let mut t = Thrust::start_ready(Options::app().env("APP_TERM_DELAY", "1.5"));
        t.signal(sig);
        let draining = wait_until(Duration::from_secs(3), || {
            get(t.port, "/up")
                .map(|r| r.status == 503 && r.text() == "draining")
                .unwrap_or(false)
        });
        assert!(draining, "{sig}: /up should answer 503 draining");
        // Everything but the health path is still proxied while the app drains.
        assert_eq!(get(t.port, "/").unwrap().status, 200, "{sig}");
        assert_eq!(
            t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
            Some(0),
            "{sig}"
        );
    }
}

#[test]
fn a_shell_wrapper_passes_signals_to_the_app_through_its_process_group() {
    // dash forks for the app here (a command follows it), so only a signal to
    // the whole group reaches the app; the wrapper itself dies of it.
    let mut t = Thrust::start_ready(app_command("APP; echo wrapper-done"));
    t.signal(Signal::SIGTERM);
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(128 + 15)
    );
    let app_got_term = wait_until(Duration::from_secs(3), || {
        t.app_entries()
            .iter()
            .any(|e| e["signal"] == Signal::SIGTERM as i32)
    });
    assert!(app_got_term, "the app behind the wrapper must get SIGTERM");
}

/// (pid, state, ppid) of every process.
fn processes() -> Vec<(i32, char, i32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .collect()
}

fn parse_stat(stat: &str) -> Option<(i32, char, i32)> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((pid, state, ppid))
}

#[test]
fn orphaned_grandchildren_are_adopted_and_reaped() {
    // The subshell exits at once, orphaning `sleep`, which then exits too.
    let t = Thrust::start_ready(app_command("(sleep 1.5 &); exec APP"));
    let thrust = t.pid();
    let mut adopted = None;
    wait_until(Duration::from_secs(1), || {
        adopted = processes().into_iter().find_map(|(pid, _, ppid)| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (ppid == thrust && comm.trim() == "sleep").then_some(pid)
        });
        adopted.is_some()
    });
    let sleep = adopted.expect("the orphaned sleep should be re-parented to thrust");
    // Once it exits, thrust reaps it: its /proc entry goes (a zombie keeps one).
    let reaped = wait_until(Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{sleep}")).exists()
    });
    assert!(reaped, "the adopted sleep (pid {sleep}) was not reaped");
    let zombies: Vec<_> = processes()
        .into_iter()
        .filter(|(_, state, ppid)| *ppid == thrust && *state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies left under thrust: {zombies:?}");
}

#[test]
fn as_pid_1_in_a_pid_namespace_thrust_reaps_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("stat");
    // Inside the namespace thrust is PID 1; the child orphans a short sleep,
    // waits past its end, then records every process's state.
    let script = format!(
        "(sleep 0.3 &); sleep 1.5; cat /proc/[0-9]*/stat > {}",
        report.display()
    );
    let out = run_tool(
        "unshare",
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            THRUST,
            "sh",
            "-c",
            &script,
        ],
    );
    assert!(
        out.status.success(),
        "unshare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = std::fs::read_to_string(&report).unwrap();
    let procs: Vec<_> = stats.lines().filter_map(parse_stat).collect();
    assert!(
        procs.iter().any(|(pid, _, _)| *pid == 1),
        "thrust runs as PID 1: {stats}"
    );
    let zombies: Vec<_> = procs.iter().filter(|(_, state, _)| *state == 'Z').collect();
    assert!(zombies.is_empty(), "zombies under PID 1: {zombies:?}");
}
