//! JSON logs (SPEC §10).

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn request_lines_carry_every_thruster_field() {
    let t = Thrust::start_ready(Options::app());
    let r = request(
        t.port,
        "POST",
        "/echo?x=1&y=%20",
        &[
            ("User-Agent", "log-test/1.0"),
            ("Content-Type", "application/json"),
        ],
        b"{\"a\":1}",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let line = t
        .wait_log(Duration::from_secs(2), |l| {
            l["msg"] == "Request" && l["path"] == "/echo"
        })
        .unwrap();
    assert_eq!(line["level"], "INFO");
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "POST");
    assert_eq!(line["query"], "x=1&y=%20");
    assert_eq!(line["req_content_length"], 7);
    assert_eq!(line["req_content_type"], "application/json");
    assert_eq!(line["resp_content_length"], r.body.len() as u64);
    assert_eq!(line["resp_content_type"], "application/json");
    assert!(line["remote_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(line["user_agent"], "log-test/1.0");
    assert_eq!(line["cache"], "bypass");
    assert_eq!(line["proto"], "HTTP/1.1");
    assert!(line["dur"].is_u64());
    assert_eq!(line["request_id"].as_str().unwrap().len(), 36);
}

#[test]
fn lifecycle_lines_from_start_to_exit() {
    let mut t = Thrust::start_ready(Options::app());
    t.signal(Signal::SIGTERM);
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    let lines = t.log_lines();
    let find = |msg: &str| {
        lines
            .iter()
            .find(|l| l["msg"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} line in {lines:?}"))
    };
    assert_eq!(
        find("Server started")["http"],
        format!("0.0.0.0:{}", t.port)
    );
    assert!(find("Child started")["pid"].as_u64().unwrap() > 1);
    assert!(find("Child ready")["after_ms"].is_u64());
    assert_eq!(find("Signal relayed to child")["signal"], "SIGTERM");
    assert_eq!(find("Child exited")["status"], "exit code 0");
}

#[test]
fn log_requests_off_keeps_lifecycle_lines() {
    let t = Thrust::start_ready(Options::app().env("LOG_REQUESTS", "off"));
    assert_eq!(get(t.port, "/").unwrap().status, 200);
    assert_eq!(get(t.port, "/missing-app-route").unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.log_lines().iter().any(|l| l["msg"] == "Request"));
    assert!(t.log_lines().iter().any(|l| l["msg"] == "Child ready"));
}

#[test]
fn debug_shows_health_checks() {
    let t = Thrust::start_ready(Options::app().env("DEBUG", "1"));
    let line = t
        .wait_log(Duration::from_secs(2), |l| {
            l["msg"] == "Health check answered"
        })
        .unwrap();
    assert_eq!(line["level"], "DEBUG");

    let quiet = Thrust::start_ready(Options::app());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!quiet.log_lines().iter().any(|l| l["level"] == "DEBUG"));
}

#[test]
fn a_stdout_nobody_reads_never_stalls_requests_and_drops_are_counted() {
    every_request_is_logged_or_counted_behind_a_stalled_stdout(&[
        "python3",
        app_script().to_str().unwrap(),
    ]);
}

#[test]
fn a_stdout_the_app_made_non_blocking_loses_no_line_uncounted() {
    // The app shares thrust's stdout, and O_NONBLOCK belongs to the pipe's
    // open file, not to one process: an app that sets it (Node.js does)
    // makes thrust's writes fail with EAGAIN once the pipe is full.
    let app = app_script();
    let script = format!(
        "import fcntl, os\n\
         fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_NONBLOCK)\n\
         os.execvp('python3', ['python3', '{}'])\n",
        app.display()
    );
    every_request_is_logged_or_counted_behind_a_stalled_stdout(&["python3", "-c", &script]);
}

fn every_request_is_logged_or_counted_behind_a_stalled_stdout(app: &[&str]) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (port, worker) = (free_port(), free_port());
    let mut thrust = Command::new(THRUST)
        .args(app)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HTTP_PORT", port.to_string())
        .env("TARGET_PORT", worker.to_string())
        .env("APP_LOG", dir.path().join("app.log"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(15), || get(port, "/up")
        .is_ok_and(|r| r.status == 200)));
    // Nobody reads thrust's stdout from here on: the pipe fills up. Cache
    // hits, answered by thrust alone, come faster than any app could.
    let target = "/text?bytes=100&h_Cache_Control=public,max-age=600";
    get(port, target).unwrap();
    let mut sent = 1;
    assert!(wait_until(Duration::from_secs(5), || {
        sent += 1;
        get(port, target).is_ok_and(|r| r.header("x-cache") == Some("hit"))
    }));
    let requests = 20_000;
    let url = format!("http://127.0.0.1:{port}{target}");
    let out = run_tool(
        "h2load",
        &[
            "--h1",
            "-n",
            &requests.to_string(),
            "-c",
            "4",
            "-T",
            "20",
            &url,
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("{requests} succeeded")),
        "requests stalled behind a full stdout: {report}"
    );

    // Reading again: every request is either logged or counted as dropped.
    let stdout = thrust.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let (mut logged, mut dropped) = (0u64, None);
    while dropped.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the drop count was never logged");
        let line: serde_json::Value = serde_json::from_str(&line).expect("whole JSON lines");
        if line["msg"] == "Request" && line["path"] == "/text" {
            logged += 1;
        }
        if line["msg"] == "Log lines dropped: stdout was not keeping up" {
            assert_eq!(line["level"], "WARN");
            dropped = line["dropped"].as_u64();
        }
    }
    let dropped = dropped.unwrap();
    assert!(dropped > 0);
    assert_eq!(
        logged + dropped,
        requests + sent,
        "{logged} logged + {dropped} dropped"
    );
    let _ = thrust.kill();
    let _ = thrust.wait();
}
