//! End to end with a real app server: Debian's Puma running the demo's
//! config.ru, which behaves like a production Rails app (force_ssl redirects
//! /up, host authorization refuses unknown hosts).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn demo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/demo"))
}

fn puma() -> Options<'static> {
    let demo = demo();
    Options::command(&[
        "puma",
        "-C",
        demo.join("puma.rb").to_str().unwrap(),
        demo.join("config.ru").to_str().unwrap(),
    ])
}

#[test]
fn puma_behind_thrust_passes_health_checks_and_stops_cleanly() {
    let mut t = Thrust::start(puma());
    t.wait_ready();

    // Puma itself redirects /up (force_ssl) and refuses unknown hosts...
    let direct = request(t.worker_port, "GET", "/up", &[("Host", "localhost")], b"").unwrap();
    assert_eq!(direct.status, 301);
    assert_eq!(direct.header("location"), Some("https://localhost/up"));
    let direct = request(t.worker_port, "GET", "/up", &[("Host", "10.0.0.7")], b"").unwrap();
    assert_eq!(direct.status, 403);
    // ...but through thrust the health check passes, for any Host.
    for host in ["localhost", "10.0.0.7", "app.example.com"] {
        let r = request(t.port, "GET", "/up", &[("Host", host)], b"").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "OK"), "{host}");
    }

    // Other paths reach Puma, with the forwarding headers Rails reads.
    let r = request(
        t.port,
        "GET",
        "/headers?via=thrust",
        &[("Host", "localhost")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["host"], "localhost");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "localhost");
    assert!(seen["x-request-start"].as_str().unwrap().starts_with("t="));
    assert_eq!(seen["x-request-id"].as_str().unwrap().len(), 36);
    // Host authorization still applies to the app's own paths.
    assert_eq!(
        request(t.port, "GET", "/headers", &[("Host", "evil.example")], b"")
            .unwrap()
            .status,
        403
    );

    let r = request(
        t.port,
        "GET",
        "/assets/app.js",
        &[("Host", "localhost")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/javascript"));
    assert!(r.text().contains("EventSource"));

    // Rack::Sendfile + Rack::Files: Puma sends the header, thrust the bytes.
    let direct = request(
        t.worker_port,
        "GET",
        "/files/assets/app.js",
        &[("Host", "localhost")],
        b"",
    )
    .unwrap();
    let on_disk = demo().join("public/assets/app.js");
    assert_eq!(direct.header("x-sendfile"), Some(on_disk.to_str().unwrap()));
    assert!(direct.body.is_empty());
    let r = request(
        t.port,
        "GET",
        "/files/assets/app.js",
        &[("Host", "localhost")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&on_disk).unwrap());
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    assert_eq!(r.header("x-sendfile"), None);

    // Puma's event stream arrives event by event.
    let arrivals = event_arrivals(t.port, "localhost", "/events");
    assert_eq!(arrivals.len(), 5);
    assert!(arrivals[4] - arrivals[0] >= Duration::from_millis(1500));

    // SIGTERM reaches Puma, which stops gracefully; thrust exits with its 0.
    t.signal(Signal::SIGTERM);
    let status = t.wait_exit(Duration::from_secs(20)).and_then(|s| s.code());
    assert_eq!(status, Some(0), "{}", t.log_text());
    let log = t.log_text();
    assert!(log.contains("Gracefully stopping"), "{log}");
    assert!(t
        .log_lines()
        .iter()
        .any(|l| l["msg"] == "Child exited" && l["status"] == "exit code 0"));
}
