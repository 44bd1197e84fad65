//! THRUST_MAX_APP_CONNECTIONS: a crowd costs the app at most the cap's
//! connections; requests over it wait their turn instead of opening more.
//! Real clients: h2load (2,000 at once) and raw TCP.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_burst_of_2000_clients_never_opens_more_app_connections_than_the_cap() {
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_MAX_APP_CONNECTIONS", "16")
            .env("THRUST_MAX_CONNECTIONS", "4000"),
    );
    let before = connections_to(t.worker_port);
    let mut load = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 8192; exec h2load --h1 -c 2000 -n 2000 -t 2 \
             'http://127.0.0.1:{}/slow-head?seconds=0.05'",
            t.port
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("h2load: run scripts/install-deps");
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while load.try_wait().unwrap().is_none() && Instant::now() < deadline {
        most = most.max(connections_to(t.worker_port));
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = load.kill();
    let out = load.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("2000 succeeded") && report.contains("status codes: 2000 2xx"),
        "{report}"
    );
    assert!(most > 0, "connections to the app were seen");
    assert!(
        most <= 16,
        "{most} app connections open at once (cap 16; {before} before)"
    );
    assert_eq!(t.app_requests("/slow-head").len(), 2000);
}

#[test]
fn event_streams_hold_no_place_at_the_app() {
    let t = Thrust::start_ready(Options::app().env("THRUST_MAX_APP_CONNECTIONS", "2"));
    // Four event streams, each open at the app for as long as it lasts...
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let port = t.port;
            std::thread::spawn(move || event_arrivals(port, "t", "/sse?n=3&interval=1"))
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || t
        .app_requests("/sse")
        .len()
        == 4));
    // ...and a page still goes through while they last: their places
    // were given back with their heads.
    let r = get(t.port, "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(streams.iter().all(|s| !s.is_finished()));
    for stream in streams {
        assert_eq!(stream.join().unwrap().len(), 3);
    }
}
