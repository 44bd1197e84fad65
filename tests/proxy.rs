//! Proxying to the app server (SPEC §5).

mod common;

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn host_query_and_forwarding_headers_reach_the_app() {
    let t = Thrust::start_ready(Options::app());
    let target = "/echo?a=%2F%2f&b=c%20d+e&&x=%E2%9C%93&empty=";
    let r = request(
        t.port,
        "GET",
        target,
        &[
            ("Host", "app.example:8443"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
        ],
        b"",
    )
    .unwrap();
    let seen = r.json();
    assert_eq!(
        seen["target"], target,
        "the query string must pass byte for byte"
    );
    let h = &seen["headers"];
    assert_eq!(h["host"], "app.example:8443");
    // FORWARD_HEADERS is on without TLS: the client's values are trusted.
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "app.example:8443");
    let start: u128 = h["x-request-start"]
        .as_str()
        .unwrap()
        .strip_prefix("t=")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(now - start < 10_000, "X-Request-Start is unix milliseconds");
    assert_eq!(h["x-request-id"].as_str().unwrap().len(), 36);
}

#[test]
fn untrusted_forwarding_headers_are_replaced() {
    let t = Thrust::start_ready(Options::app().env("FORWARD_HEADERS", "false"));
    let r = request(
        t.port,
        "GET",
        "/echo",
        &[
            ("Host", "app.example"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
        ],
        b"",
    )
    .unwrap();
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example");
}

#[test]
fn hop_by_hop_headers_are_removed_both_ways() {
    let t = Thrust::start_ready(Options::app());
    let r = request(
        t.port,
        "GET",
        "/echo",
        &[
            ("Connection", "X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Normal", "yes"),
        ],
        b"",
    )
    .unwrap();
    let h = &r.json()["headers"];
    for gone in ["x-secret", "keep-alive", "te", "proxy-connection"] {
        assert!(h.get(gone).is_none(), "{gone} reached the app: {h}");
    }
    assert_eq!(h["x-normal"], "yes");

    let r = get(t.port, "/headers").unwrap();
    assert_eq!(r.header("x-kept"), Some("yes"));
    assert_eq!(r.header("x-internal"), None);
    assert_eq!(r.header("keep-alive"), None);
}

#[test]
fn request_ids_are_kept_or_made_and_logged() {
    let t = Thrust::start_ready(Options::app());
    let r = request(
        t.port,
        "GET",
        "/echo",
        &[("X-Request-Id", "outer-123")],
        b"",
    )
    .unwrap();
    assert_eq!(r.json()["headers"]["x-request-id"], "outer-123");
    let r = get(t.port, "/echo?second").unwrap();
    let made = r.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(t
        .wait_log(Duration::from_secs(2), |l| l["request_id"] == "outer-123")
        .is_some());
    assert!(t
        .wait_log(Duration::from_secs(2), |l| l["request_id"] == made.as_str())
        .is_some());
}

const BIG: u64 = 200_000_000;

#[test]
fn large_uploads_and_downloads_stream_with_flat_memory() {
    let t = Thrust::start_ready(Options::app());
    let (rss_before, _) = t.memory_kib();

    let mut stream = connect(t.port);
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let block = vec![b'u'; 1 << 16];
    let mut sent = 0;
    while sent < BIG {
        let n = block.len().min((BIG - sent) as usize);
        stream.write_all(&block[..n]).unwrap();
        sent += n as u64;
    }
    let r = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(r.text(), BIG.to_string());

    let received = bytes_received(t.port, &format!("/download?bytes={BIG}"));
    assert!(received > BIG && received < BIG + 1024, "{received}");

    let (_, peak) = t.memory_kib();
    assert!(
        peak < rss_before + 32 * 1024,
        "memory grew with the body: {rss_before} KiB before, peak {peak} KiB"
    );
}

#[test]
fn server_sent_events_arrive_as_they_are_written() {
    let t = Thrust::start_ready(Options::app());
    let arrivals = event_arrivals(t.port, "t", "/sse?n=3&interval=0.7");
    assert_eq!(arrivals.len(), 3, "{arrivals:?}");
    // Each event is delivered when written, not when the stream ends.
    let spread = arrivals[2] - arrivals[0];
    assert!(
        spread >= Duration::from_millis(1000),
        "events arrived together: {spread:?}"
    );
}

fn websocket_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn websocket_upgrade_echoes_both_ways_and_outlives_the_idle_timeout() {
    let t = Thrust::start_ready(Options::app().env("HTTP_IDLE_TIMEOUT", "1"));
    let mut stream = connect(t.port);
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let r = read_response(&mut reader, true).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    for message in ["hello", "over the idle timeout"] {
        stream
            .write_all(&websocket_frame(message.as_bytes()))
            .unwrap();
        let mut head = [0u8; 2];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0x81);
        let mut payload = vec![0; head[1] as usize];
        reader.read_exact(&mut payload).unwrap();
        assert_eq!(payload, message.as_bytes());
        std::thread::sleep(Duration::from_millis(1500));
    }
}

#[test]
fn a_client_that_goes_away_cancels_the_upstream_request() {
    let t = Thrust::start_ready(Options::app());
    let mut stream = connect(t.port);
    stream
        .write_all(b"GET /hang?seconds=20 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || !t
        .app_requests("/hang")
        .is_empty()));
    drop(stream);
    let cancelled = wait_until(Duration::from_secs(5), || {
        t.app_entries().iter().any(|e| e["event"] == "disconnected")
    });
    assert!(
        cancelled,
        "the app's connection should be closed when the client leaves"
    );
}

#[test]
fn an_unreachable_app_or_a_broken_connection_gets_the_502_page() {
    let pages = tempfile::tempdir().unwrap();
    let page = pages.path().join("502.html");
    std::fs::write(&page, "<p>restarting</p>").unwrap();
    let script = format!("python3 {} & sleep 60", app_script().display());
    let t = Thrust::start_ready(
        Options::command(&["sh", "-c", &script]).env("BAD_GATEWAY_PAGE", page.to_string_lossy()),
    );
    // Read at start-up: what happens to the file later does not matter.
    std::fs::remove_file(&page).unwrap();

    let r = get(t.port, "/close").unwrap();
    assert_eq!((r.status, r.text().as_str()), (502, "<p>restarting</p>"));

    let app_pid = t
        .app_entries()
        .iter()
        .find(|e| e["event"] == "listening")
        .and_then(|e| e["pid"].as_i64())
        .unwrap();
    send_signal(app_pid as i32, nix::sys::signal::Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(5), || get(t.port, "/")
        .map(|r| r.status == 502)
        .unwrap_or(false)));
    assert!(t
        .wait_log(Duration::from_secs(2), |l| l["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("App server unreachable")))
        .is_some());
    let r = get(t.port, "/").unwrap();
    assert_eq!((r.status, r.text().as_str()), (502, "<p>restarting</p>"));

    // No page file at start-up: an empty 502.
    let t = Thrust::start_ready(Options::app());
    let r = get(t.port, "/close").unwrap();
    assert_eq!((r.status, r.body.len()), (502, 0));
}

#[test]
fn a_missing_response_head_times_out_but_a_slow_stream_is_never_cut() {
    let t = Thrust::start_ready(Options::app().env("THRUST_UPSTREAM_TIMEOUT", "1"));
    let started = Instant::now();
    let r = get(t.port, "/slow-head?seconds=4").unwrap();
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    let line = t
        .wait_log(Duration::from_secs(2), |l| {
            l["level"] == "WARN" && l["path"] == "/slow-head"
        })
        .unwrap();
    assert!(line["msg"]
        .as_str()
        .unwrap()
        .contains("THRUST_UPSTREAM_TIMEOUT"));

    // A stream whose head came at once lives past the timeout.
    let arrivals = event_arrivals(t.port, "t", "/sse?n=4&interval=0.6");
    assert_eq!(arrivals.len(), 4);
}

#[test]
fn the_upstream_timeout_runs_from_the_end_of_an_upload() {
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_UPSTREAM_TIMEOUT", "1")
            .env("HTTP_READ_TIMEOUT", "30"),
    );
    // 30,000 bytes in three parts 0.8 s apart: the upload outlasts the
    // limit and is still answered.
    let mut s = connect(t.port);
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 30000\r\n\r\n")
        .unwrap();
    for part in 0..3 {
        if part > 0 {
            std::thread::sleep(Duration::from_millis(800));
        }
        s.write_all(&[b'a'; 10_000]).unwrap();
    }
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(
        (r.status, r.text()),
        (200, "30000".to_string()),
        "{}",
        t.log_text()
    );

    // An app that stops taking the body: 504 once the limit has passed
    // since it last took bytes, while the client is still sending.
    let mut s = connect(t.port);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(
        b"POST /ignore-body?seconds=8 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n",
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let block = [b'b'; 65536];
        // Until the socket buffers fill and thrust answers and closes.
        for _ in 0..1600 {
            if writer.write_all(&block).is_err() {
                break;
            }
        }
    });
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 504, "{}", t.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(sender);
}

#[test]
fn a_response_the_app_breaks_off_is_cut_short_and_logged() {
    let t = Thrust::start_ready(Options::app());
    let mut s = connect(t.port);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /reset-mid-body?bytes=1000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut received = Vec::new();
    let _ = s.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    // The announced length stays, the body falls short, and the connection
    // closes: a client cannot take it for a whole response.
    assert!(
        head.to_ascii_lowercase()
            .contains("content-length: 1000000"),
        "{head}"
    );
    assert_eq!(body.len(), 100_000);
    let line = t
        .wait_log(Duration::from_secs(2), |l| {
            l["level"] == "WARN"
                && l["msg"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Response cut short"))
        })
        .expect("a warning names the cut");
    assert_eq!(line["path"], "/reset-mid-body");
    assert_eq!(line["sent"], 100_000);
}

#[test]
fn bodies_over_the_limit_get_413_and_never_reach_the_app() {
    let t = Thrust::start_ready(Options::app().env("MAX_REQUEST_BODY", "1000"));
    let r = request(t.port, "POST", "/upload", &[], &[b'a'; 1000]).unwrap();
    assert_eq!(r.text(), "1000");

    let r = request(t.port, "POST", "/upload", &[], &[b'a'; 1001]).unwrap();
    assert_eq!(r.status, 413);

    // Chunked: no declared length, the limit is found while streaming.
    let mut body = Vec::new();
    for _ in 0..4 {
        body.extend_from_slice(b"200\r\n");
        body.extend_from_slice(&[b'b'; 0x200]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    let r = raw(t.port, &req).unwrap();
    assert_eq!(r.status, 413);
    wait_until(Duration::from_secs(10), || {
        !t.app_requests("/upload").is_empty()
    });
    let uploads = t.app_requests("/upload");
    assert_eq!(
        uploads.len(),
        1,
        "only the body within the limit reached the app: {uploads:?}"
    );
}

#[test]
fn h2c_prior_knowledge_when_enabled() {
    let t = Thrust::start_ready(Options::app().env("H2C_ENABLED", "1"));
    let url = format!("http://127.0.0.1:{}/echo?h2", t.port);
    let out = run_tool(
        "curl",
        &[
            "-s",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
            "-H",
            "Host: app.example",
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["headers"]["host"], "app.example");

    let out = run_tool(
        "h2load",
        &[
            "-n",
            "200",
            "-c",
            "4",
            "-m",
            "8",
            &format!("http://127.0.0.1:{}/", t.port),
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("200 succeeded, 0 failed, 0 errored"),
        "{report}"
    );
    assert!(report.contains("200 2xx"), "{report}");
}

#[test]
fn h2c_is_refused_when_disabled_and_the_log_says_how_to_enable_it() {
    let t = Thrust::start_ready(Options::app());
    let url = format!("http://127.0.0.1:{}/", t.port);
    for _ in 0..3 {
        let out = run_tool(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "--http2-prior-knowledge",
                &url,
            ],
        );
        assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
    }
    assert!(t.app_requests("/").is_empty());
    let warned = |l: &serde_json::Value| {
        l["level"] == "WARN" && l["msg"].as_str().unwrap_or("").contains("H2C_ENABLED=1")
    };
    assert!(
        t.wait_log(Duration::from_secs(5), warned).is_some(),
        "{}",
        t.log_text()
    );
    // One warning a minute, however many clients try.
    assert_eq!(t.log_lines().iter().filter(|l| warned(l)).count(), 1);
    // HTTP/1.1 is served as before.
    assert_eq!(get(t.port, "/").unwrap().status, 200);
}

#[test]
fn a_unix_socket_worker() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let t =
        Thrust::start_ready(Options::app().env("THRUST_WORKER_SOCKET", socket.to_string_lossy()));
    let r = get(t.port, "/echo?unix").unwrap();
    assert_eq!(r.json()["target"], "/echo?unix");
}

#[test]
fn connections_the_app_closed_while_idle_are_never_reused() {
    // The app drops keep-alive connections idle for 0.3 s; each round finds
    // the pool's connections closed and must still get every answer.
    let t = Thrust::start_ready(Options::app().env("APP_IDLE_TIMEOUT", "0.3"));
    for round in 0..4 {
        let answers: Vec<_> = (0..8)
            .map(|i| {
                let port = t.port;
                std::thread::spawn(move || get(port, &format!("/echo?round={round}&i={i}")))
            })
            .collect();
        for answer in answers {
            let r = answer.join().unwrap().unwrap();
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
        }
        std::thread::sleep(Duration::from_millis(600));
    }
}

#[test]
fn a_bursts_app_connections_are_closed_once_traffic_quiets_down() {
    // A cap above the burst: each of its requests gets a connection.
    let t = Thrust::start_ready(Options::app().env("THRUST_MAX_APP_CONNECTIONS", "200"));
    let port = t.port;
    // 100 requests at once, each holding an app connection for 0.5 s.
    let burst: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                request(port, "GET", "/slow_head?seconds=0.5", &[], b"")
                    .unwrap()
                    .status
            })
        })
        .collect();
    for request in burst {
        assert_eq!(request.join().unwrap(), 200);
    }
    let after_burst = connections_to(t.worker_port);
    assert!(
        after_burst > 64,
        "{after_burst} app connections after the burst"
    );
    // At most 32 stay per worker thread (two on CI's two CPUs).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        wait_until(Duration::from_secs(10), || connections_to(t.worker_port)
            <= 32 * workers),
        "{} app connections stayed open",
        connections_to(t.worker_port)
    );
    // The pool still serves.
    assert_eq!(get(t.port, "/").unwrap().status, 200);
}
