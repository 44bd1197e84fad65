//! Timeouts and bad input (SPEC §11).

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Reads until the server closes the connection (or 10 s pass); returns what came.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

#[test]
fn a_slowloris_client_is_cut_while_200_others_are_served() {
    let t = Thrust::start_ready(Options::app().env("HTTP_READ_TIMEOUT", "2"));
    let port = t.port;
    let slow = std::thread::spawn(move || {
        let mut stream = connect(port);
        let head = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let started = Instant::now();
        for byte in head.iter() {
            if stream.write_all(&[*byte]).is_err() {
                return (started.elapsed(), true);
            }
            std::thread::sleep(Duration::from_millis(250));
            let mut probe = [0u8; 1];
            stream.set_nonblocking(true).unwrap();
            let closed = matches!(stream.read(&mut probe), Ok(0));
            stream.set_nonblocking(false).unwrap();
            if closed {
                return (started.elapsed(), true);
            }
        }
        (started.elapsed(), false)
    });
    std::thread::sleep(Duration::from_millis(300));
    let others: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                get(port, &format!("/?client={i}"))
                    .map(|r| r.status)
                    .unwrap_or(0)
            })
        })
        .collect();
    let ok = others
        .into_iter()
        .map(|h| h.join().unwrap_or(0))
        .filter(|status| *status == 200)
        .count();
    assert_eq!(ok, 200, "every other client gets its answer");
    let (elapsed, cut) = slow.join().unwrap();
    assert!(cut, "the slow client was never cut");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    assert!(t.app_requests("/slow").is_empty());
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let t = Thrust::start_ready(
        Options::app()
            .env("HTTP_IDLE_TIMEOUT", "1")
            .env("HTTP_READ_TIMEOUT", "5"),
    );
    // A connection that never sends anything.
    let mut silent = connect(t.port);
    // A connection that made one request and keeps the connection open.
    let mut used = connect(t.port);
    used.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(used.try_clone().unwrap());
    assert_eq!(read_response(&mut reader, false).unwrap().status, 200);
    // Reuse within the idle limit works.
    std::thread::sleep(Duration::from_millis(500));
    used.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().status, 200);

    let started = Instant::now();
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(read_until_closed(&mut used).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_that_stops_reading_is_cut_at_the_write_timeout() {
    let t = Thrust::start_ready(Options::app().env("HTTP_WRITE_TIMEOUT", "1"));
    let size = 300_000_000u64;
    let mut stream = connect(t.port);
    write!(
        stream,
        "GET /download?bytes={size} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    // Read nothing for a while: thrust's writes stall and time out.
    std::thread::sleep(Duration::from_secs(4));
    let received = read_until_closed(&mut stream).len() as u64;
    assert!(
        received < size,
        "the whole body was sent to a client that did not read"
    );
}

#[test]
fn a_request_body_that_stalls_gets_408_and_never_reaches_the_app() {
    let t = Thrust::start_ready(Options::app().env("HTTP_READ_TIMEOUT", "1"));
    let mut stream = connect(t.port);
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let r = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(r.status, 408);
    // Once thrust has logged the request it is done with it: the app, which
    // records only whole requests, can no longer get the rest.
    assert!(t
        .wait_log(Duration::from_secs(5), |l| l["path"] == "/upload"
            && l["status"] == 408)
        .is_some());
    assert!(t.app_requests("/upload").is_empty());
}

#[test]
fn a_refused_pipelined_head_is_answered_in_its_own_turn() {
    let t = Thrust::start_ready(Options::app());
    let first = "GET /first HTTP/1.1\r\nHost: t\r\n\r\n";
    let bad = [
        "POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
        format!("GET /smuggle HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024)),
    ];
    for (second, status) in bad.iter().zip([400, 431]) {
        // Both heads in one write, and in two writes back to back.
        for split in [false, true] {
            let mut stream = connect(t.port);
            if split {
                stream.write_all(first.as_bytes()).unwrap();
                stream.write_all(second.as_bytes()).unwrap();
            } else {
                stream
                    .write_all(format!("{first}{second}").as_bytes())
                    .unwrap();
            }
            let mut reader = BufReader::new(stream);
            let one = read_response(&mut reader, false).unwrap();
            let two = read_response(&mut reader, false).unwrap();
            assert_eq!((one.status, two.status), (200, status), "split: {split}");
        }
    }
    // The app logs each request it handles: the four good ones, and then no
    // refused one.
    wait_until(Duration::from_secs(10), || {
        t.app_requests("/first").len() >= 4
    });
    assert_eq!(t.app_requests("/first").len(), 4);
    assert!(t.app_requests("/smuggle").is_empty());
}

#[test]
fn malformed_and_smuggling_requests_get_400_and_never_reach_the_app() {
    let t = Thrust::start_ready(Options::app());
    let cases: [(&str, &[u8], u16); 7] = [
        ("CL+TE", b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
        ("TE+CL", b"POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG", 400),
        ("two Content-Length", b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", 400),
        ("bad chunk size", b"POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
        ("TE not chunked", b"POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
        ("broken header line", b"GET /smuggle HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n", 400),
        ("space before colon", b"GET /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\n\r\n", 400),
    ];
    for (name, bytes, status) in cases {
        let mut stream = connect(t.port);
        stream.write_all(bytes).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let r = read_response(&mut reader, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status, status, "{name}");
        // And the connection is closed after it.
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "{name}: more after the error: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    let huge = format!(
        "GET /smuggle HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(raw(t.port, huge.as_bytes()).unwrap().status, 431);
    let fits = format!(
        "GET /fits HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(60 * 1024)
    );
    assert_eq!(raw(t.port, fits.as_bytes()).unwrap().status, 200);

    std::thread::sleep(Duration::from_millis(300));
    assert!(
        t.app_requests("/smuggle").is_empty(),
        "the app saw: {:?}",
        t.app_requests("/smuggle")
    );
    assert_eq!(get(t.port, "/").unwrap().status, 200, "thrust still serves");
}

#[test]
fn request_heads_over_64_kib_get_431_and_never_reach_the_app() {
    // Many ordinary lines add up as surely as one long one; h2c on or off
    // (HTTP/1.1 is then served by another connection builder).
    for h2c in ["0", "1"] {
        let t = Thrust::start_ready(Options::app().env("H2C_ENABLED", h2c));
        let line = format!("X-Filler: {}\r\n", "a".repeat(988));
        for (lines, status) in [(80, 431), (60, 200)] {
            let head = format!(
                "GET /big-head?lines={lines} HTTP/1.1\r\nHost: t\r\n{}\r\n",
                line.repeat(lines)
            );
            let mut stream = connect(t.port);
            stream.write_all(head.as_bytes()).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let r = read_response(&mut reader, false).unwrap();
            assert_eq!(r.status, status, "{lines} lines, h2c {h2c}");
            if status == 431 {
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
                assert!(rest.is_empty(), "the connection stays open after 431");
            }
        }
        wait_until(Duration::from_secs(10), || {
            !t.app_requests("/big-head").is_empty()
        });
        let seen = t.app_requests("/big-head");
        assert_eq!(seen.len(), 1, "h2c {h2c}: the app saw {seen:?}");
        assert_eq!(seen[0]["target"], "/big-head?lines=60");
    }
}

#[test]
fn more_than_100_header_lines_get_431() {
    // Puma takes any number of lines (Python's http.server refuses more than
    // 100 itself, counting those thrust adds): a 431 here is thrust's.
    let t = Thrust::start_ready(Options::puma("tests/apps/origin.ru"));
    for (lines, status) in [(101, 431), (100, 200)] {
        // Host, Connection and short lines: far below 64 KiB.
        let fillers: String = (2..lines).map(|i| format!("X-Line-{i}: {i}\r\n")).collect();
        let head =
            format!("GET /many-lines HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{fillers}\r\n");
        assert_eq!(
            raw(t.port, head.as_bytes()).unwrap().status,
            status,
            "{lines} lines"
        );
    }
}

#[test]
fn a_thousand_idle_connections_beyond_the_starting_fd_limit_do_not_stop_others() {
    let script = format!(
        "echo \"app open files: $(ulimit -n)\"; exec python3 {}",
        app_script().display()
    );
    let mut options = Options::command(&["sh", "-c", &script]);
    options.soft_nofile = Some(1024);
    let t = Thrust::start_ready(options);
    // thrust raised its own limit; the app got the one thrust started with.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", t.pid())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        open_files[3], open_files[4],
        "soft limit raised to the hard limit: {open_files:?}"
    );
    assert!(t.log_text().contains("app open files: 1024"));

    let mut idle: Vec<TcpStream> = (0..1100).map(|_| connect(t.port)).collect();
    let port = t.port;
    let others: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || get(port, "/").map(|r| r.status).unwrap_or(0)))
        .collect();
    assert!(others.into_iter().all(|h| h.join().unwrap_or(0) == 200));
    // The oldest and the newest idle connections are still served.
    for i in [0, 1099] {
        idle[i]
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = read_response(&mut BufReader::new(idle[i].try_clone().unwrap()), false).unwrap();
        assert_eq!(r.status, 200, "idle connection {i}");
    }
}

#[test]
fn connections_over_the_limit_get_503_until_room_comes_back() {
    let t = Thrust::start_ready(Options::app().env("THRUST_MAX_CONNECTIONS", "5"));
    // Five connections, each with a request at the app: busy, so none is
    // closed to make room (tests/crowds.rs has the idle ones).
    let request = b"GET /hang?seconds=8 HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut held = busy_connections(&t, 5, request, "/hang");
    for _ in 0..5 {
        let r = get(t.port, "/").unwrap();
        assert_eq!(
            (r.status, r.header("retry-after"), r.text().as_str()),
            (503, Some("1"), "server busy: too many connections\n")
        );
    }
    let warnings = || {
        t.log_lines()
            .iter()
            .filter(|l| {
                l["level"] == "WARN"
                    && l["msg"]
                        .as_str()
                        .is_some_and(|m| m.contains("THRUST_MAX_CONNECTIONS"))
            })
            .count()
    };
    assert!(wait_until(Duration::from_secs(2), || warnings() == 1));
    drop(held.pop());
    assert!(wait_until(Duration::from_secs(5), || get(t.port, "/")
        .map(|r| r.status == 200)
        .unwrap_or(false)));
    // The requests held all along are still at the app: only the dropped
    // one's client went away.
    let disconnected = t
        .app_entries()
        .iter()
        .filter(|e| e["event"] == "disconnected")
        .count();
    assert_eq!(disconnected, 1);
    assert_eq!(warnings(), 1, "one warning, not one per refusal");
}

/// User plus system CPU seconds a process has used.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[test]
fn the_default_limit_leaves_room_and_running_out_of_descriptors_never_spins() {
    // Sized from the open-file limit: half of 128.
    let mut options = Options::app();
    options.nofile = Some((128, 128));
    let t = Thrust::start_ready(options);
    let started = t
        .wait_log(Duration::from_secs(2), |l| l["msg"] == "Server started")
        .unwrap();
    assert_eq!(started["max_connections"], 64);
    let mut held = Vec::new();
    let mut busy = 0;
    for _ in 0..80 {
        let mut s = connect(t.port);
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).unwrap();
        match r.status {
            200 => held.push(s),
            503 => busy += 1,
            other => panic!("status {other}: {}", t.log_text()),
        }
    }
    // Past 64 the longest idle ones were closed to make room (or, while
    // none had idled long enough to count as idle, new ones got 503):
    // never more than 64 open at once.
    assert!(held.len() >= 64, "{} served, {busy} busy", held.len());
    let still_open = held
        .iter()
        .filter(|s| {
            // Open and idle: a read waits (closed: it ends or fails).
            let mut s: &TcpStream = s;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            matches!(s.read(&mut [0u8; 1]), Err(e) if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ))
        })
        .count();
    assert!(still_open <= 64, "{still_open} open");
    drop(held);

    // A limit set above what the descriptors allow: accept(2) fails with
    // EMFILE, and thrust waits for descriptors instead of spinning.
    let mut options = Options::app().env("THRUST_MAX_CONNECTIONS", "1000");
    options.nofile = Some((64, 64));
    let t = Thrust::start_ready(options);
    let waiting: Vec<TcpStream> = (0..100).map(|_| connect(t.port)).collect();
    assert!(t
        .wait_log(Duration::from_secs(5), |l| l["msg"] == "Accept failed")
        .is_some());
    let before = cpu_seconds(t.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(t.pid()) - before;
    assert!(used < 0.5, "{used} CPU seconds in 2 s without descriptors");
    let failures_logged = t
        .log_lines()
        .iter()
        .filter(|l| l["msg"] == "Accept failed")
        .count();
    assert!(failures_logged <= 2, "{}", t.log_text());
    drop(waiting);
    assert!(wait_until(Duration::from_secs(5), || get(t.port, "/")
        .map(|r| r.status == 200)
        .unwrap_or(false)));
    assert!(t
        .wait_log(Duration::from_secs(2), |l| l["msg"]
            == "Accepting connections again")
        .is_some());
}
