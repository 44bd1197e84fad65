//! Crowds at THRUST_MAX_CONNECTIONS: idle keep-alive clients (HTTP/1
//! parked, HTTP/2 with no stream open) and unfinished request heads give
//! way to new visitors; busy connections never do. Real clients: raw TCP
//! and tests/apps/h2_client.py (python3-h2).

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// A keep-alive connection answered 200, left open.
fn answered_connection(port: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).unwrap();
    assert_eq!(r.status, 200);
    s
}

/// Whether thrust has closed `s` (read sees the end, or a reset); an open
/// connection is given 300 ms to show it.
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match s.read(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn metric(port: u16, name: &str) -> f64 {
    scrape(port).get(name).copied().unwrap_or(0.0)
}

fn limit_warnings(t: &Thrust) -> Vec<String> {
    t.log_lines()
        .iter()
        .filter(|l| l["level"] == "WARN")
        .filter_map(|l| l["msg"].as_str().map(str::to_owned))
        .filter(|m| m.contains("THRUST_MAX_CONNECTIONS"))
        .collect()
}

#[test]
fn idle_keep_alive_clients_make_room_for_new_visitors_oldest_first() {
    let metrics = free_port();
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_MAX_CONNECTIONS", "10")
            .env("THRUST_METRICS_PORT", metrics.to_string()),
    );
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(answered_connection(t.port));
        // Each parks before the next opens: the first is the longest idle.
        assert!(wait_until(
            Duration::from_secs(5),
            || metric(metrics, "thrust_parked_connections{}") as usize == idle.len()
        ));
    }
    // New visitors are browsers too: each keeps its connection.
    let _visitors: Vec<TcpStream> = (0..5).map(|_| answered_connection(t.port)).collect();
    for (i, s) in idle.iter_mut().enumerate() {
        assert_eq!(closed(s), i < 5, "idle connection {i}");
    }
    // The five that stayed are still served.
    for s in idle.iter_mut().skip(5) {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).unwrap();
        assert_eq!(r.status, 200);
    }
    let scraped = scrape(metrics);
    assert_eq!(
        scraped.get("thrust_shed_connections_total{reason=\"idle\"}"),
        Some(&5.0)
    );
    assert_eq!(
        scraped.get("thrust_refused_connections_total{}"),
        Some(&0.0)
    );
    let warnings = limit_warnings(&t);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("idle connections"), "{warnings:?}");
}

/// A hostile client: holds `n` connections, each with a request head it
/// never finishes, and opens a new one whenever thrust closes one, until
/// `stop`. Returns how many thrust closed.
fn hold_unfinished_heads(port: u16, n: usize, stop: Arc<AtomicBool>) -> usize {
    let open = || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ").ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut held: Vec<TcpStream> = (0..n).filter_map(|_| open()).collect();
    let mut closed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut byte = [0u8; 64];
        held.retain_mut(|s| match s.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            _ => {
                closed += 1;
                false
            }
        });
        while held.len() < n {
            match open() {
                Some(s) => held.push(s),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    closed
}

#[test]
fn a_house_full_of_unfinished_heads_serves_new_visitors_again_within_seconds() {
    let metrics = free_port();
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_MAX_CONNECTIONS", "20")
            .env("THRUST_METRICS_PORT", metrics.to_string()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (port, stop) = (t.port, stop.clone());
        std::thread::spawn(move || hold_unfinished_heads(port, 20, stop))
    };
    // The house is full: young heads are not closed, the visitor is refused.
    assert!(wait_until(Duration::from_secs(5), || get(t.port, "/")
        .is_ok_and(|r| r.status == 503)));
    let full = Instant::now();
    let mut served = 0;
    let mut first_served = None;
    while served < 5 && full.elapsed() < Duration::from_secs(10) {
        if get(t.port, "/").is_ok_and(|r| r.status == 200) {
            served += 1;
            first_served.get_or_insert(full.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let closed_heads = attacker.join().unwrap();
    let first_served = first_served.expect("no visitor served with the house full of heads");
    assert!(
        first_served < Duration::from_secs(3),
        "first visitor served after {first_served:?}"
    );
    assert_eq!(served, 5, "visitors served within 10 s");
    assert!(closed_heads >= 5, "heads closed: {closed_heads}");
    let shed = metric(
        metrics,
        "thrust_shed_connections_total{reason=\"slow_head\"}",
    );
    assert!(shed >= 5.0, "slow heads counted: {shed}");
}

#[test]
fn large_unfinished_heads_past_their_memory_budget_close_the_oldest() {
    let metrics = free_port();
    // A cache as large as any machine's memory leaves connections nothing:
    // heads get the budget's floor, 1 MiB (16 heads of 60 KiB).
    let t = Thrust::start_ready(
        Options::app()
            .env("CACHE_SIZE", (1u64 << 40).to_string())
            .env("THRUST_MAX_CONNECTIONS", "200")
            .env("THRUST_METRICS_PORT", metrics.to_string()),
    );
    let filler = "a".repeat(60 * 1024);
    let head = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: {filler}");
    let mut heads: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect(t.port);
            s.write_all(head.as_bytes()).unwrap();
            // In order: each has been read before the next comes.
            std::thread::sleep(Duration::from_millis(20));
            s
        })
        .collect();
    // Normal visitors are served: a small head finds room.
    for _ in 0..3 {
        assert_eq!(get(t.port, "/").unwrap().status, 200);
    }
    let open: Vec<bool> = heads.iter_mut().map(|s| !closed(s)).collect();
    let kept = open.iter().filter(|o| **o).count();
    assert!(!open[0] && open[39], "the oldest go first: {open:?}");
    assert!((5..=17).contains(&kept), "heads kept: {kept}");
    let shed = metric(
        metrics,
        "thrust_shed_connections_total{reason=\"head_memory\"}",
    );
    assert!(shed >= 20.0, "heads closed for memory counted: {shed}");
    assert!(t.log_lines().iter().any(|l| l["level"] == "WARN"
        && l["msg"]
            .as_str()
            .unwrap_or("")
            .contains("whole memory budget")));
}

#[test]
fn tls_connections_weigh_more_and_idle_ones_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let (options, https, _) = Options::app().https_app_test(dir.path());
    // A cache as large as any machine's memory leaves connections the
    // floor: 256 KiB of weight, 21 TLS connections at 12 KiB (64 plain).
    let _t = Thrust::start_ready(
        options
            .env("CACHE_SIZE", (1u64 << 40).to_string())
            .env("THRUST_METRICS_PORT", metrics.to_string()),
    );
    // 25 keep-alive clients over TLS, a fifth of a second apart, each
    // answered and then idle; then which of them thrust has closed.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/tls_keepalive.py");
    let out = run_tool(
        "python3",
        &[script, &https.to_string(), "25", "0.2", "closed"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let closed: Vec<bool> = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    let count = closed.iter().filter(|c| **c).count();
    // The longest idle go first: those closed are the oldest, in order.
    let oldest_first = closed.iter().skip_while(|c| **c).all(|c| !c);
    assert!(oldest_first, "the longest idle go first: {closed:?}");
    assert!((3..=5).contains(&count), "closed for room: {closed:?}");
    let shed = metric(metrics, "thrust_shed_connections_total{reason=\"idle\"}");
    assert!(
        shed >= 3.0,
        "idle connections closed for room counted: {shed}"
    );
}

#[test]
fn busy_connections_are_never_closed_for_room() {
    let t = Thrust::start_ready(Options::app().env("THRUST_MAX_CONNECTIONS", "2"));
    // Two connections, each with a request at the app.
    let request = b"GET /slow-head?seconds=4 HTTP/1.1\r\nHost: t\r\n\r\n";
    let busy = busy_connections(&t, 2, request, "/slow-head");
    let r = get(t.port, "/").unwrap();
    assert_eq!(r.status, 503);
    for s in busy {
        let r = read_response(&mut BufReader::new(s), false).unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(limit_warnings(&t)
        .iter()
        .any(|w| w.contains("every connection is busy")));
}

#[test]
fn an_idle_http2_connection_goes_with_goaway_to_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let (options, https, _) = Options::app().https_app_test(dir.path());
    let t = Thrust::start_ready(options.env("THRUST_MAX_CONNECTIONS", "1"));
    let answered = dir.path().join("answered");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/h2_client.py");
    let client = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["idle", &https.to_string(), "/", "--seconds", "10"])
        .arg("--when")
        .arg(&answered)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with python3-h2: run scripts/install-deps");
    assert!(wait_until(Duration::from_secs(5), || answered.exists()));
    // The HTTP/2 connection, its one stream done, holds the only place;
    // the visitor is admitted (and answered, whatever its answer).
    let r = get(t.port, "/").unwrap();
    assert_ne!(r.status, 503);
    let out = client.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["status"], 200);
    assert!(!report["goaway"].is_null(), "{report}");
}
