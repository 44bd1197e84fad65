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
fn an_unserved_metrics_port_is_called_out() {
    let metrics = free_port();
    let t = Thrust::start_ready(Options::app().env("THRUST_METRICS_PORT", metrics.to_string()));
    let line = t
        .wait_log(Duration::from_secs(2), |l| {
            l["level"] == "WARN" && l["port"] == metrics
        })
        .unwrap();
    assert!(line["msg"]
        .as_str()
        .unwrap()
        .contains("THRUST_METRICS_PORT"));
}
