//! Idle keep-alive connections are parked: they hold little memory, give it
//! back when they close, and are served again as if nothing happened.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

fn served(stream: &mut TcpStream) -> u16 {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let r = read_response(&mut reader, false).unwrap();
    assert_eq!(r.text(), "hello from app\n");
    r.status
}

/// `count` keep-alive connections that have each had one request answered.
fn served_connections(port: u16, count: u64) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = connect(port);
            stream.write_all(GET).unwrap();
            assert_eq!(served(&mut stream), 200);
            stream
        })
        .collect()
}

/// thrust_parked_connections, from /metrics on `metrics_port`.
fn parked(metrics_port: u16) -> f64 {
    scrape(metrics_port)
        .get("thrust_parked_connections{}")
        .copied()
        .unwrap_or(f64::NAN)
}

/// Waits until `count` connections are parked; fails the test if they never are.
fn wait_parked(metrics_port: u16, count: u64) {
    assert!(
        wait_until(Duration::from_secs(20), || parked(metrics_port)
            == count as f64),
        "{count} connections never all parked: {} are",
        parked(metrics_port)
    );
}

/// thrust's RSS once it drops to `bound` KiB (the allocator returns freed
/// pages about a second after connections park or close), or as it is
/// after 10 s.
fn rss_settled_below(t: &Thrust, bound: u64) -> u64 {
    wait_until(Duration::from_secs(10), || t.memory_kib().0 < bound);
    t.memory_kib().0
}

#[test]
fn idle_connections_hold_little_memory_and_are_served_again() {
    let metrics = free_port();
    let t = Thrust::start_ready(Options::app().env("THRUST_METRICS_PORT", metrics.to_string()));
    let mut warm = connect(t.port);
    warm.write_all(GET).unwrap();
    assert_eq!(served(&mut warm), 200);
    wait_parked(metrics, 1);
    let (before, _) = t.memory_kib();

    const COUNT: u64 = 400;
    let mut idle = served_connections(t.port, COUNT);
    wait_parked(metrics, COUNT + 1);
    let held = rss_settled_below(&t, before + 8 * COUNT);
    let per_connection = held.saturating_sub(before) / COUNT;
    assert!(
        per_connection < 8,
        "{COUNT} idle connections: {before} KiB before, {held} KiB with them ({per_connection} KiB each)"
    );

    // Parked connections answer again on the same socket: a whole request,
    // a head that arrives in two parts across a pause, two pipelined.
    idle[0].write_all(GET).unwrap();
    assert_eq!(served(&mut idle[0]), 200);
    idle[1].write_all(b"GET / HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    idle[1].write_all(b"Host: t\r\n\r\n").unwrap();
    assert_eq!(served(&mut idle[1]), 200);
    idle[2].write_all(&[GET, GET].concat()).unwrap();
    let mut pipelined = BufReader::new(idle[2].try_clone().unwrap());
    for _ in 0..2 {
        assert_eq!(read_response(&mut pipelined, false).unwrap().status, 200);
    }
    // A parked connection can still be upgraded (WebSocket).
    idle[3]
        .write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .unwrap();
    let mut upgraded = BufReader::new(idle[3].try_clone().unwrap());
    assert_eq!(read_response(&mut upgraded, true).unwrap().status, 101);

    // Closed, they give their memory back (the readers hold copies of two
    // of the sockets: they go too).
    drop((pipelined, upgraded));
    drop(idle);
    wait_parked(metrics, 1);
    let after = rss_settled_below(&t, before + 2048);
    assert!(
        after < before + 2048,
        "{before} KiB before, {after} KiB after {COUNT} connections closed"
    );
}

#[test]
fn parked_connections_close_at_the_idle_timeout() {
    let metrics = free_port();
    let t = Thrust::start_ready(
        Options::app()
            .env("HTTP_IDLE_TIMEOUT", "2")
            .env("THRUST_METRICS_PORT", metrics.to_string()),
    );
    let mut timed_out = connect(t.port);
    timed_out.write_all(GET).unwrap();
    assert_eq!(served(&mut timed_out), 200);
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    assert_eq!(timed_out.read_to_end(&mut rest).unwrap(), 0);
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn neither_parked_nor_silent_new_connections_hold_up_shutdown() {
    // HTTP_IDLE_TIMEOUT at its default (60 s) and THRUST_SHUTDOWN_TIMEOUT
    // at 30: an exit within a few seconds means both were closed at once.
    let metrics = free_port();
    let mut t = Thrust::start_ready(Options::app().env("THRUST_METRICS_PORT", metrics.to_string()));
    let mut kept = connect(t.port);
    kept.write_all(GET).unwrap();
    assert_eq!(served(&mut kept), 200);
    wait_parked(metrics, 1);
    let mut silent = connect(t.port);
    let open = || {
        scrape(metrics)
            .get("thrust_open_connections{protocol=\"http/1.1\"}")
            .copied()
            .unwrap_or(0.0)
    };
    assert!(wait_until(Duration::from_secs(5), || open() >= 2.0));
    t.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(t.wait_exit(Duration::from_secs(10)).is_some());
    let mut rest = Vec::new();
    assert_eq!(kept.read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(silent.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn with_h2c_on_idle_http1_connections_are_parked_and_http2_ones_served() {
    let metrics = free_port();
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_METRICS_PORT", metrics.to_string())
            .env("H2C_ENABLED", "1"),
    );
    let mut idle = served_connections(t.port, 3);
    wait_parked(metrics, 3);
    idle[2].write_all(GET).unwrap();
    assert_eq!(served(&mut idle[2]), 200);

    // HTTP/2 with prior knowledge is told apart and served on the same port.
    let url = format!("http://127.0.0.1:{}/", t.port);
    let out = run_tool(
        "curl",
        &[
            "-s",
            "--http2-prior-knowledge",
            "-w",
            "%{http_version}",
            &url,
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from app\n2");
}

#[test]
fn idle_tls_connections_are_parked_and_served_again() {
    use std::io::BufRead;
    let certs = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let (options, https, _) = Options::app().https_app_test(certs.path());
    let _t = Thrust::start_ready(options.env("THRUST_METRICS_PORT", metrics.to_string()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/tls_keepalive.py");
    let mut clients = std::process::Command::new("python3")
        .args([script, &https.to_string(), "5"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(clients.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    wait_parked(metrics, 5);

    // Parked: hyper's part is gone, TLS's session stays; each answers again.
    writeln!(clients.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "[200, 200, 200, 200, 200]");
    assert!(clients.wait().unwrap().success());
}
