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
        "README's variable table drifted from src/config/table.rs; put this between the markers:\n{table}"
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
        ("TLS_DOMAIN", "example.com,*.example.com", "DNS-01"),
        ("THRUST_HTTP3", "1", "unless TLS is on"),
        ("THRUST_MAX_APP_CONNECTIONS", "0", "above 0"),
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

#[test]
fn check_prints_where_each_value_came_from() {
    let port = free_port().to_string();
    let out = thrust(
        &["check", "python3", "-V"],
        &[
            ("THRUSTER_HTTP_PORT", &port),
            ("TARGET_PORT", "4000"),
            ("EAB_KID", "kid"),
            ("EAB_HMAC_KEY", "c2VjcmV0"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for line in [
        format!("HTTP_PORT={port}  (from THRUSTER_HTTP_PORT)"),
        "THRUST_WORKER_PORT=4000  (from TARGET_PORT)".to_string(),
        "EAB_HMAC_KEY=(set, not shown)  (from EAB_HMAC_KEY)".to_string(),
        "CACHE_SIZE=67108864  (default)".to_string(),
        format!("HTTP_PORT: port {port} can be listened on"),
        "the app on 127.0.0.1:4000 (it gets PORT=4000)".to_string(),
        "compression: zstd, br, gzip".to_string(),
        "command: python3 -V".to_string(),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in\n{stdout}");
    }
    assert!(!stdout.contains("c2VjcmV0"), "a secret was printed");
    assert!(stdout.trim_end().ends_with("OK"));
}

#[test]
fn check_fails_as_startup_would_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let touched = dir.path().join("spawned");
    let touch = format!("touch {}", touched.display());
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    // A UDP port taken where HTTP/3 would listen (its TCP twin is free).
    let taken_udp = loop {
        let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            break udp;
        }
    };
    let taken_udp_port = taken_udp.local_addr().unwrap().port().to_string();
    let free = free_port().to_string();
    let https = free_port().to_string();
    let not_executable = dir.path().join("app.sh");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let (one, other) = (dir.path().join("one"), dir.path().join("other"));
    for (tag, names) in [(&one, "a.example"), (&other, "b.example")] {
        let generated = rcgen::generate_simple_self_signed(vec![names.to_string()]).unwrap();
        std::fs::write(tag.with_extension("crt"), generated.cert.pem()).unwrap();
        std::fs::write(
            tag.with_extension("key"),
            generated.signing_key.serialize_pem(),
        )
        .unwrap();
    }
    let (cert, right_key, wrong_key) = (
        one.with_extension("crt").display().to_string(),
        one.with_extension("key").display().to_string(),
        other.with_extension("key").display().to_string(),
    );
    let not_executable = not_executable.display().to_string();
    // (what, command, environment, exit code)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, i32);
    let cases: Vec<Case> = vec![
        (
            "bad value",
            vec!["sh", "-c", &touch],
            vec![("HTTP_PORT", "eighty")],
            2,
        ),
        (
            "port in use",
            vec!["sh", "-c", &touch],
            vec![("HTTP_PORT", &taken_port)],
            1,
        ),
        (
            "mismatched certificate",
            vec!["sh", "-c", &touch],
            vec![
                ("HTTP_PORT", &free),
                ("HTTPS_PORT", &https),
                ("SSL_CERT_PATH", &cert),
                ("SSL_KEY_PATH", &wrong_key),
            ],
            2,
        ),
        (
            "HTTP/3's UDP port in use",
            vec!["sh", "-c", &touch],
            vec![
                ("HTTP_PORT", &free),
                ("HTTPS_PORT", &taken_udp_port),
                ("SSL_CERT_PATH", &cert),
                ("SSL_KEY_PATH", &right_key),
                ("THRUST_HTTP3", "1"),
            ],
            1,
        ),
        (
            "missing command",
            vec!["no-such-app"],
            vec![("HTTP_PORT", &free)],
            127,
        ),
        (
            "not executable",
            vec![&not_executable],
            vec![("HTTP_PORT", &free)],
            126,
        ),
    ];
    for (name, command, env, code) in cases {
        let mut checked = vec!["check"];
        checked.extend(&command);
        let check = thrust(&checked, &env);
        let start = thrust(&command, &env);
        assert_eq!(check.status.code(), Some(code), "{name}: check");
        assert_eq!(start.status.code(), Some(code), "{name}: start-up");
        assert_eq!(
            String::from_utf8_lossy(&check.stderr),
            String::from_utf8_lossy(&start.stderr),
            "{name}: check and start-up say the same"
        );
    }
    assert!(!touched.exists(), "nothing was started");

    // ACME storage is checked, not created.
    let storage = dir.path().join("storage/thruster");
    let out = thrust(
        &["check", "true"],
        &[
            ("HTTP_PORT", &free),
            ("HTTPS_PORT", &free_port().to_string()),
            ("TLS_DOMAIN", "app.example"),
            ("STORAGE_PATH", storage.to_str().unwrap()),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!storage.exists(), "check created STORAGE_PATH");
}
