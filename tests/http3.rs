//! HTTP/3 over QUIC on the HTTPS port's UDP twin (THRUST_HTTP3, SPEC §9),
//! driven by a real HTTP/3 client: aioquic's, from tests/apps/h3_client.py
//! (installed by scripts/install-deps into target/tools/aioquic).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// thrust with a static certificate for app.test and HTTP/3 on, in front
/// of the Python test app.
fn start_h3(dir: &Path, extra: &[(&'static str, &str)]) -> (Thrust, u16, PathBuf) {
    let (cert, key) = self_signed_app_test(dir);
    let https_port = free_port();
    let options = with_h3(Options::app(), &cert, &key, https_port, extra);
    (Thrust::start_ready(options), https_port, cert)
}

fn with_h3<'a>(
    options: Options<'a>,
    cert: &Path,
    key: &Path,
    https_port: u16,
    extra: &[(&'a str, &str)],
) -> Options<'a> {
    let mut options = options
        .env("SSL_CERT_PATH", cert.to_string_lossy())
        .env("SSL_KEY_PATH", key.to_string_lossy())
        .env("HTTPS_PORT", https_port.to_string())
        .env("THRUST_HTTP3", "1");
    for (name, value) in extra {
        options = options.env(name, *value);
    }
    options
}

/// The HTTP/3 client's answers for `target` on app.test; it must succeed.
fn h3(port: u16, ca: &Path, target: &str, args: &[&str]) -> Vec<Value> {
    let (ok, answers, stderr) = h3_client(port, ca, "app.test", target, args);
    assert!(ok, "h3_client {target}: {answers:?} {stderr}");
    answers
}

/// thrust with HTTP/3 in front of Puma running tests/apps/early_hints.ru,
/// whose /page?NAME waits for the file NAME in `release`; with
/// `early_hints`, Puma sends the app's 103s.
fn start_puma_h3(dir: &Path, release: &Path, early_hints: bool) -> (Thrust, u16, PathBuf) {
    let (cert, key) = self_signed_app_test(dir);
    let port = free_port();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("demo/puma.rb");
    let app = root.join("tests/apps/early_hints.ru");
    let mut command = vec![
        "puma",
        "-C",
        config.to_str().unwrap(),
        app.to_str().unwrap(),
    ];
    if early_hints {
        command.insert(1, "--early-hints");
    }
    let puma = Options::command(&command).env("RELEASE_DIR", release.to_str().unwrap());
    let thrust = Thrust::start(with_h3(puma, &cert, &key, port, &[]));
    thrust.wait_ready();
    (thrust, port, cert)
}

/// The answer to a POST of the 5 bytes `hello` to `target` with `header`
/// added, over HTTP/3.
fn post_hello(dir: &Path, port: u16, ca: &Path, target: &str, header: &str) -> Value {
    let body = dir.join("hello");
    std::fs::write(&body, b"hello").unwrap();
    let args = [
        "--method",
        "POST",
        "--data-file",
        body.to_str().unwrap(),
        "--header",
        header,
    ];
    h3(port, ca, target, &args).remove(0)
}

/// The head of curl's answer for / on app.test over TCP+TLS, lower-cased.
fn tcp_head(port: u16, ca: &Path) -> String {
    let out = run_tool(
        "curl",
        &[
            "-s",
            "-D-",
            "-o/dev/null",
            "--max-time",
            "10",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("app.test:{port}:127.0.0.1"),
            &format!("https://app.test:{port}/"),
        ],
    );
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

fn header<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    answer["headers"][name][0].as_str()
}

#[test]
fn requests_over_http3_reach_the_app_and_are_logged_as_http3() {
    let dir = tempfile::tempdir().unwrap();
    let (thrust, port, ca) = start_h3(dir.path(), &[]);
    // The health check is thrust's own answer over HTTP/3 too.
    let up = &h3(port, &ca, "/up", &[])[0];
    assert_eq!(
        (up["status"].as_u64(), up["body"].as_str()),
        (Some(200), Some("OK"))
    );
    let answers = h3(port, &ca, "/echo?from=h3", &["--repeat", "2"]);
    assert_eq!(answers.len(), 2, "{answers:?}");
    for answer in &answers {
        assert_eq!(answer["status"], 200, "{answer}");
        let seen: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(seen["method"], "GET");
        assert_eq!(seen["target"], "/echo?from=h3");
        assert_eq!(
            seen["headers"]["host"],
            "app.test:".to_string() + &port.to_string()
        );
        assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
        // Offered on TCP only: a client already on HTTP/3 is not told again.
        assert_eq!(header(answer, "alt-svc"), None);
    }
    let logged = thrust
        .wait_log(Duration::from_secs(5), |line| {
            line["msg"] == "Request" && line["path"] == "/echo"
        })
        .expect("a request log line");
    assert_eq!(logged["proto"], "HTTP/3.0");
}

#[test]
fn a_five_megabyte_upload_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_thrust, port, ca) = start_h3(dir.path(), &[]);
    let body: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i * 7 + i / 4093) as u8)
        .collect();
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, &body).unwrap();
    let answers = h3(
        port,
        &ca,
        "/digest",
        &["--method", "POST", "--data-file", file.to_str().unwrap()],
    );
    let digest = run_tool("sha256sum", &[file.to_str().unwrap()]);
    let expected = String::from_utf8_lossy(&digest.stdout);
    let expected = expected.split_whitespace().next().unwrap();
    assert_eq!(answers[0]["status"], 200, "{:?}", answers[0]);
    assert_eq!(answers[0]["body"], format!("5000000 {expected}"));
}

#[test]
fn answers_over_tcp_offer_http3_on_the_port_the_client_reached() {
    let dir = tempfile::tempdir().unwrap();
    let (_thrust, port, ca) = start_h3(dir.path(), &[]);
    let head = tcp_head(port, &ca);
    assert!(
        head.contains(&format!("alt-svc: h3=\":{port}\"; ma=86400")),
        "{head}"
    );
}

#[test]
fn without_http3_nothing_is_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_app_test(dir.path());
    let port = free_port();
    let _thrust = Thrust::start_ready(
        Options::app()
            .env("SSL_CERT_PATH", cert.to_string_lossy())
            .env("SSL_KEY_PATH", key.to_string_lossy())
            .env("HTTPS_PORT", port.to_string()),
    );
    let body = https_get(port, &cert, "app.test", "/").unwrap();
    assert_eq!(body, "hello from app\n");
    let head = tcp_head(port, &cert);
    assert!(!head.contains("alt-svc"), "{head}");
}

#[test]
fn an_event_stream_arrives_as_the_app_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_thrust, port, ca) = start_h3(dir.path(), &[]);
    let answers = h3(port, &ca, "/sse?n=3&interval=0.5", &["--times"]);
    let answer = &answers[0];
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(
        answer["body"]
            .as_str()
            .unwrap()
            .matches("data: event")
            .count(),
        3
    );
    // Each event reaches the client as it is written, not all at the end.
    let chunks: Vec<f64> = answer["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(chunks.len() >= 3, "{chunks:?}");
    assert!(chunks[chunks.len() - 1] - chunks[0] >= 0.8, "{chunks:?}");
}

#[test]
fn cached_assets_come_from_the_cache_compressed_as_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (_thrust, port, ca) = start_h3(dir.path(), &[]);
    let script: String = (0..400)
        .map(|i| format!("function f{i}() {{ return {i}; }}\n"))
        .collect();
    let file = dir.path().join("app.js");
    std::fs::write(&file, &script).unwrap();
    let target = format!("/asset?path={}", file.display());
    let args = ["--header", "Accept-Encoding: br", "--digest"];
    let first = h3(port, &ca, &target, &args);
    assert_eq!(header(&first[0], "x-cache"), Some("miss"), "{first:?}");
    // Stored once its variants are made, on the blocking pool.
    let mut answers = Vec::new();
    let stored = wait_until(Duration::from_secs(5), || {
        answers = h3(port, &ca, &target, &args);
        header(&answers[0], "x-cache") == Some("hit")
    });
    let hit = &answers[0];
    assert!(stored, "{hit}");
    assert_eq!(hit["status"], 200, "{hit}");
    assert_eq!(header(hit, "content-encoding"), Some("br"), "{hit}");
    assert!(hit["length"].as_u64().unwrap() < script.len() as u64 / 2);
    // The same stored variant, byte for byte, as a client over TCP gets.
    let over_tcp = dir.path().join("over-tcp.br");
    run_tool(
        "curl",
        &[
            "-s",
            "--max-time",
            "10",
            "-H",
            "Accept-Encoding: br",
            "-o",
            over_tcp.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("app.test:{port}:127.0.0.1"),
            &format!("https://app.test:{port}{target}"),
        ],
    );
    assert_eq!(hit["sha256"], sha256_of(&over_tcp));
}

fn sha256_of(file: &Path) -> String {
    let out = run_tool("sha256sum", &[file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn files_the_app_names_are_sent_whole_and_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (_thrust, port, ca) = start_h3(dir.path(), &[]);
    let bytes: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &bytes).unwrap();
    let target = format!(
        "/sendfile?path={}&type=application/octet-stream",
        file.display()
    );
    let answers = h3(port, &ca, &target, &["--header", "Range: bytes=10-19"]);
    let part = &answers[0];
    assert_eq!(part["status"], 206, "{part}");
    assert_eq!(header(part, "content-range"), Some("bytes 10-19/100000"));
    assert_eq!(
        part["body"],
        String::from_utf8_lossy(&bytes[10..20]).as_ref()
    );
    let whole = &h3(port, &ca, &target, &["--digest"])[0];
    assert_eq!(whole["status"], 200, "{whole}");
    assert_eq!(whole["sha256"], sha256_of(&file));
}

#[test]
fn a_reloaded_certificate_is_served_over_quic_too() {
    let dir = tempfile::tempdir().unwrap();
    let (first_cert, first_key) = self_signed_app_test(dir.path());
    let (live_cert, live_key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&first_cert, &live_cert).unwrap();
    std::fs::copy(&first_key, &live_key).unwrap();
    let port = free_port();
    let options = with_h3(Options::app(), &live_cert, &live_key, port, &[]);
    let _thrust = Thrust::start_ready(options);
    assert!(h3_client(port, &first_cert, "app.test", "/", &[]).0);

    let names = vec!["app.test".to_string(), "renamed.test".to_string()];
    let second = rcgen::generate_simple_self_signed(names).unwrap();
    let second_ca = dir.path().join("second.crt");
    std::fs::write(&second_ca, second.cert.pem()).unwrap();
    std::fs::write(&live_key, second.signing_key.serialize_pem()).unwrap();
    std::fs::write(&live_cert, second.cert.pem()).unwrap();
    let reloaded = wait_until(Duration::from_secs(10), || {
        h3_client(port, &second_ca, "renamed.test", "/", &[]).0
    });
    assert!(reloaded, "the new certificate is served over QUIC");
    let (old_trusted, answers, _) = h3_client(port, &first_cert, "app.test", "/", &[]);
    assert!(!old_trusted, "the old certificate is gone: {answers:?}");
}

#[test]
fn requests_in_flight_finish_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let release = tempfile::tempdir().unwrap();
    let (mut thrust, port, cert) = start_puma_h3(dir.path(), release.path(), false);
    let ca = cert.clone();
    let client = std::thread::spawn(move || h3_client(port, &ca, "app.test", "/page?late", &[]));
    let arrived = release.path().join("late.arrived");
    assert!(wait_until(Duration::from_secs(10), || arrived.exists()));
    thrust.signal(nix::sys::signal::Signal::SIGTERM);
    std::fs::write(release.path().join("late"), b"").unwrap();
    let (ok, answers, stderr) = client.join().unwrap();
    assert!(ok, "{answers:?} {stderr}");
    assert_eq!(answers[0]["status"], 200, "{answers:?}");
    assert_eq!(answers[0]["body"], "<!doctype html><p>rendered</p>\n");
    assert!(thrust.wait_exit(Duration::from_secs(10)).is_some());
}

/// A client process, ended when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn quic_connections_count_against_the_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (thrust, port, ca) = start_h3(dir.path(), &[("THRUST_MAX_CONNECTIONS", "1")]);
    // The one place taken by a TCP connection with a request at the app
    // (busy: an idle one would be closed to make room; until the start-up
    // check's connection is let go, a new one is turned away)...
    let mut held = None;
    let admitted = (0..10).any(|_| {
        let resolve = format!("app.test:{port}:127.0.0.1");
        let url = format!("https://app.test:{port}/hang?seconds=20");
        let curl = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "20", "--resolve", &resolve, &url])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("curl: run scripts/install-deps");
        held = Some(KillOnDrop(curl));
        wait_until(Duration::from_secs(1), || {
            !thrust.app_requests("/hang").is_empty()
        })
    });
    assert!(admitted, "the busy connection was never admitted");
    let (ok, answers, _) = h3_client(port, &ca, "app.test", "/", &["--timeout", "3"]);
    assert!(!ok, "refused while the limit is reached: {answers:?}");
    // ...and free again once it closes.
    drop(held);
    let served = wait_until(Duration::from_secs(5), || {
        h3_client(port, &ca, "app.test", "/", &[]).0
    });
    assert!(served);
}

#[test]
fn a_client_that_stops_reading_holds_a_bounded_part_of_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (thrust, port, ca) = start_h3(dir.path(), &[]);
    let before = thrust.memory_kib().0;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut client = Command::new(root.join("target/tools/aioquic/bin/python"))
        .arg(root.join("tests/apps/h3_client.py"))
        .args(["--connect", "127.0.0.1", "--ca", ca.to_str().unwrap()])
        .args(["--digest", "--timeout", "60"])
        .arg(format!("https://app.test:{port}/download?bytes=500000000"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || !thrust
        .app_requests("/download")
        .is_empty()));
    // The client stops: nothing it has not acknowledged is sent on, and the
    // app's answer waits in the app rather than in thrust.
    let pid = nix::unistd::Pid::from_raw(client.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // Until thrust's memory has settled: two samples 300 ms apart within
    // 64 KiB of each other.
    let mut last = thrust.memory_kib().0;
    let settled = wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = thrust.memory_kib().0;
        let steady = now.abs_diff(last) < 64;
        last = now;
        steady
    });
    assert!(settled, "thrust's memory kept moving");
    let grown_kib = thrust.memory_kib().0.saturating_sub(before);
    client.kill().unwrap();
    client.wait().unwrap();
    assert!(grown_kib < 24 * 1024, "thrust grew by {grown_kib} KiB");
}

#[test]
fn connection_specific_headers_are_refused_before_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let (thrust, port, ca) = start_h3(dir.path(), &[]);
    for header in [
        "Transfer-Encoding: chunked",
        "Connection: keep-alive",
        "Upgrade: websocket",
        "TE: gzip",
    ] {
        let answer = post_hello(dir.path(), port, &ca, "/refused", header);
        assert_eq!(answer["status"], 400, "{header}: {answer}");
    }
    assert!(thrust.app_requests("/refused").is_empty());
    // TE: trailers is the one TE HTTP/3 allows.
    let answer = &h3(port, &ca, "/allowed", &["--header", "TE: trailers"])[0];
    assert_eq!(answer["status"], 200, "{answer}");
}

#[test]
fn open_quic_connections_are_counted_as_h3() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let (_thrust, port, ca) =
        start_h3(dir.path(), &[("THRUST_METRICS_PORT", &metrics.to_string())]);
    let ca_copy = ca.clone();
    let stream =
        std::thread::spawn(move || h3(port, &ca_copy, "/sse?n=3&interval=1", &["--times"]));
    let key = "thrust_open_connections{protocol=\"h3\"}";
    let counted = wait_until(Duration::from_secs(5), || {
        scrape(metrics).get(key) == Some(&1.0)
    });
    assert!(counted, "{:?}", scrape(metrics).get(key));
    assert_eq!(stream.join().unwrap()[0]["status"], 200);
    let released = wait_until(Duration::from_secs(5), || {
        scrape(metrics).get(key) == Some(&0.0)
    });
    assert!(released, "{:?}", scrape(metrics).get(key));
}

#[test]
fn a_body_that_disagrees_with_its_content_length_gets_400() {
    let dir = tempfile::tempdir().unwrap();
    let (_thrust, port, ca) = start_h3(dir.path(), &[]);
    for declared in ["3", "10"] {
        let length = format!("Content-Length: {declared}");
        let answer = post_hello(dir.path(), port, &ca, "/upload", &length);
        assert_eq!(answer["status"], 400, "{declared}: {answer}");
    }
}

#[test]
fn early_hints_reach_http3_clients_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let release = tempfile::tempdir().unwrap();
    let (_thrust, port, cert) = start_puma_h3(dir.path(), release.path(), true);
    let ca = cert.clone();
    let client = std::thread::spawn(move || h3(port, &ca, "/page?h3", &["--times"]));
    let arrived = release.path().join("h3.arrived");
    assert!(wait_until(Duration::from_secs(10), || arrived.exists()));
    std::fs::write(release.path().join("h3"), b"").unwrap();
    let answer = &client.join().unwrap()[0];
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"], "<!doctype html><p>rendered</p>\n");
    let hints = answer["informational"].as_array().unwrap();
    assert_eq!(hints.len(), 2, "{answer}");
    assert!(hints.iter().all(|h| h["status"] == 103));
    let links = hints[0]["headers"]["link"].to_string();
    assert!(links.contains("application-4f1e2a9b.css"), "{links}");
    assert!(hints[1]["headers"]["link"]
        .to_string()
        .contains("logo-1b2c3d4e.svg"));
}

#[test]
fn handshakes_piling_up_get_retry_and_tcp_clients_are_still_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let (thrust, port, ca) = start_h3(dir.path(), &[("THRUST_MAX_CONNECTIONS", "100")]);
    // 200 handshakes that are never finished, each from its own address.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("target/tools/aioquic/bin/python"))
        .arg(root.join("tests/apps/quic_initials.py"))
        .args([&port.to_string(), "200"])
        .output()
        .expect("aioquic: run scripts/install-deps");
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    // The first ones get a handshake; past the threshold, a Retry, which
    // a spoofed address never answers: no place is spent on them.
    let (retried, handshakes) = (
        counts["retry"].as_u64().unwrap(),
        counts["handshake"].as_u64().unwrap(),
    );
    eprintln!("QUIC Initials answered: {counts}");
    assert!(retried >= 100, "{counts}");
    assert!(handshakes <= 100, "{counts}");
    // TCP clients are still admitted, and a real QUIC client (which
    // answers the Retry) is served.
    let r = get(thrust.port, "/up").unwrap();
    assert_ne!(r.status, 503);
    let (ok, answers, stderr) = h3_client(port, &ca, "app.test", "/", &[]);
    assert!(ok, "{answers:?} {stderr}");
    assert_eq!(answers[0]["status"], 200);
}
