//! The health path answered by thrust itself (SPEC §4).

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn starting_then_ready_for_get_and_head_and_any_host() {
    let t = Thrust::start(Options::app().env("APP_BOOT_DELAY", "1.5"));
    let starting = wait_until(Duration::from_secs(3), || get(t.port, "/up").is_ok());
    assert!(starting);
    let r = get(t.port, "/up").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "starting"));
    assert_eq!(r.header("retry-after"), Some("1"));

    t.wait_ready();
    let r = request(t.port, "GET", "/up", &[("Host", "evil.example")], b"").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let r = request(t.port, "HEAD", "/up", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        t.app_requests("/up").is_empty(),
        "health checks must never reach the app"
    );
    assert!(
        !t.log_lines()
            .iter()
            .any(|l| l["msg"] == "Request" && l["path"] == "/up" && l["status"] == 200),
        "passing health checks are not logged at info level"
    );

    // Other methods on the health path are the app's.
    let r = request(t.port, "POST", "/up", &[], b"x").unwrap();
    assert_eq!(r.text(), "hello from app\n");
    assert_eq!(t.app_requests("/up").len(), 1);
}

#[test]
fn health_path_can_be_moved_or_disabled() {
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_HEALTH_PATH", "/healthz")
            .env("THRUST_BOOT_WAIT", "5"),
    );
    let r = get(t.port, "/healthz").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    assert_eq!(get(t.port, "/up").unwrap().text(), "hello from app\n");
    drop(t);

    let t = Thrust::start(Options::app().env("THRUST_HEALTH_PATH", ""));
    t.wait_listening();
    // With no health path, /up belongs to the app (boot wait covers its start).
    let r = get(t.port, "/up").unwrap();
    assert_eq!(r.text(), "hello from app\n");
}

#[test]
fn a_request_during_boot_waits_for_the_app() {
    let t = Thrust::start(
        Options::app()
            .env("APP_BOOT_DELAY", "1.5")
            .env("THRUST_BOOT_WAIT", "10"),
    );
    t.wait_listening();
    let started = Instant::now();
    let r = get(t.port, "/").unwrap();
    assert_eq!(r.text(), "hello from app\n");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the request should have waited for the app"
    );
}

#[test]
fn boot_wait_runs_out_into_the_bad_gateway_page() {
    // thrust reads the page at start-up.
    let pages = tempfile::tempdir().unwrap();
    let page = pages.path().join("502.html");
    std::fs::write(&page, "<h1>back soon</h1>").unwrap();
    let t = Thrust::start(
        Options::app()
            .env("APP_BOOT_DELAY", "30")
            .env("THRUST_BOOT_WAIT", "1")
            .env("BAD_GATEWAY_PAGE", page.to_string_lossy()),
    );
    t.wait_listening();
    let r = get(t.port, "/").unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "<h1>back soon</h1>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
}

#[test]
fn deep_check_probes_the_app_as_https_localhost() {
    let t = Thrust::start_ready(Options::app().env("THRUST_HEALTH_UPSTREAM_PATH", "/echo"));
    let probes = t.app_requests("/echo");
    assert!(!probes.is_empty());
    assert_eq!(probes[0]["headers"]["x-forwarded-proto"], "https");
    assert_eq!(probes[0]["headers"]["host"], "localhost");
    // Results are reused for a second: a burst of checks probes the app once or twice.
    for _ in 0..10 {
        assert_eq!(get(t.port, "/up").unwrap().status, 200);
    }
    assert!(
        t.app_requests("/echo").len() <= 3,
        "{}",
        t.app_requests("/echo").len()
    );
}

#[test]
fn a_failing_deep_check_turns_up_to_503_and_explains_a_redirect() {
    let t = Thrust::start(Options::app().env("THRUST_HEALTH_UPSTREAM_PATH", "/redirect-to-https"));
    // The app is up (boot wait is for the port, not the deep check)...
    assert!(wait_until(Duration::from_secs(10), || get(t.port, "/")
        .map(|r| r.status == 200)
        .unwrap_or(false)));
    // ...but /up is 503 while the app redirects its health path.
    let r = get(t.port, "/up").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "unhealthy"));
    let warning = t
        .wait_log(Duration::from_secs(2), |l| {
            l["msg"] == "Health check of the app failed"
        })
        .unwrap();
    let problem = warning["problem"].as_str().unwrap();
    assert!(
        problem.contains("301")
            && problem.contains("https://localhost/")
            && problem.contains("force_ssl"),
        "{problem}"
    );
    assert_eq!(warning["level"], "WARN");
}

#[test]
fn a_port_mismatch_is_named_in_the_log() {
    let other = free_port();
    let t = Thrust::start(Options::app().env("APP_LISTEN_PORT", other.to_string()));
    let warning = t
        .wait_log(Duration::from_secs(15), |l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Child listens on"))
        })
        .unwrap_or_else(|| panic!("no port warning; log:\n{}", t.log_text()));
    let msg = warning["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("127.0.0.1:{other}")), "{msg}");
    assert!(
        msg.contains(&format!("thrust expects 127.0.0.1:{}", t.worker_port)),
        "{msg}"
    );
    assert_eq!(get(t.port, "/up").unwrap().status, 503);
}

#[test]
fn a_child_that_dies_before_it_is_ready_is_reported() {
    let mut t = Thrust::start(Options::command(&["sh", "-c", "sleep 0.2; exit 3"]));
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(3)
    );
    let line = t
        .log_lines()
        .into_iter()
        .find(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Child exited before it was ever ready"))
        })
        .unwrap();
    assert_eq!(line["status"], "exit code 3");
    assert_eq!(line["level"], "ERROR");
}
