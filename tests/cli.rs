//! Command line, configuration errors and exit codes (SPEC §1, §2).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn thrust(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(THRUST);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn no_command_prints_usage_and_exits_2() {
    let out = thrust(&[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Usage: thrust CMD"), "{stderr}");
}

#[test]
fn help_lists_every_variable_and_version_prints() {
    let out = thrust(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for v in thrust::config::VARIABLES {
        assert!(text.contains(v.name), "--help misses {}", v.name);
    }
    let out = thrust(&["--version"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("thrust "));
}

#[test]
fn readme_table_matches_the_configuration_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- config-table -->")
        .expect("README has the config-table marker");
    let end = readme
        .find("<!-- /config-table -->")
        .expect("README has the end marker");
    let in_readme = readme[start + "<!-- config-table -->".len()..end].trim();
    let table = thrust::config::markdown_table();
    assert_eq!(
        in_readme,
        table.trim(),
        "README's variable table drifted from src/config.rs; put this between the markers:\n{table}"
    );
}

#[test]
fn bad_values_stop_startup_naming_the_variable() {
    let marker = tempfile::tempdir().unwrap();
    let touched = marker.path().join("spawned");
    let touch = format!("touch {}", touched.display());
    for (name, value, expected) in [
        ("HTTP_PORT", "eighty", "port number"),
        ("THRUSTER_DEBUG", "maybe", "true/false"),
        ("CACHE_SIZE", "64MB", "bytes"),
        ("HTTP_READ_TIMEOUT", "1.5", "seconds"),
        ("SSL_KEY_PATH", "/nonexistent/key.pem", "SSL_CERT_PATH"),
    ] {
        let out = thrust(&["sh", "-c", &touch], &[(name, value)]);
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(value) && stderr.contains(expected),
            "{stderr}"
        );
        assert!(stderr.contains(name) || name == "SSL_KEY_PATH", "{stderr}");
    }
    let out = thrust(
        &["sh", "-c", &touch],
        &[("HTTP_PORT", "9000"), ("TARGET_PORT", "9000")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TARGET_PORT"));
    assert!(
        !touched.exists(),
        "the child must not be spawned on a configuration error"
    );
}

#[test]
fn missing_and_unexecutable_commands_follow_the_shell_convention() {
    let port = free_port().to_string();
    let out = thrust(&["/nonexistent/app-server"], &[("HTTP_PORT", &port)]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("server");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let out = thrust(&[script.to_str().unwrap()], &[("HTTP_PORT", &port)]);
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
}

#[test]
fn exit_code_is_the_childs_or_128_plus_signal() {
    let mut t = Thrust::start(Options::command(&["sh", "-c", "exit 7"]));
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(7)
    );

    let mut t = Thrust::start(Options::command(&["sh", "-c", "kill -KILL $$"]));
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(128 + 9)
    );
}

#[test]
fn a_port_in_use_exits_1_before_the_child_starts() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let touched = dir.path().join("spawned");
    let out = thrust(
        &["sh", "-c", &format!("touch {}", touched.display())],
        &[("HTTP_PORT", &port)],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&port) && stderr.contains("HTTP_PORT"),
        "{stderr}"
    );
    assert!(!touched.exists());
}

#[test]
fn sigterm_to_a_sleeping_child_exits_with_its_status() {
    let mut t = Thrust::start(Options::command(&["sleep", "30"]));
    assert!(t
        .wait_log(Duration::from_secs(5), |l| l["msg"] == "Child started")
        .is_some());
    t.signal(Signal::SIGTERM);
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(128 + 15)
    );
}
