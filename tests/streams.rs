//! One request, whatever protocol carries it: HTTP/1.1 (hyper), HTTP/2 (the
//! h2 crate) and HTTP/3 (the h3 crate) behave the same where a client can
//! tell — a client that goes away cancels the app's request, a client that
//! stops reading is cut off after HTTP_WRITE_TIMEOUT, a malformed
//! Content-Length never reaches the app, and on multiplexed streams a Host
//! that differs from :authority is refused. Real clients: raw TCP,
//! tests/apps/h2_client.py (python3-h2) and tests/apps/h3_client.py
//! (aioquic).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// thrust in front of the Python test app, with plain HTTP on `t.port`
/// and, for app.test, HTTPS (h2) on TCP and HTTP/3 on UDP at the port
/// returned.
fn start(dir: &Path, extra: &[(&'static str, &str)]) -> (Thrust, u16, PathBuf) {
    let (options, https, cert) = Options::app().https_app_test(dir);
    let mut options = options.env("THRUST_HTTP3", "1");
    for (name, value) in extra {
        options = options.env(name, *value);
    }
    (Thrust::start_ready(options), https, cert)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name)
}

/// Starts tests/apps/h2_client.py with `args`; its report comes from
/// `report`.
fn h2_client(args: &[&str]) -> Child {
    Command::new("/usr/bin/python3")
        .arg(script("h2_client.py"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with python3-h2: run scripts/install-deps")
}

fn report(client: Child) -> Value {
    let out = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// Starts tests/apps/h3_client.py for `target` on app.test with `args`.
fn h3_spawn(port: u16, ca: &Path, target: &str, args: &[&str]) -> Child {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(root.join("target/tools/aioquic/bin/python"))
        .arg(script("h3_client.py"))
        .args(["--connect", "127.0.0.1", "--ca", ca.to_str().unwrap()])
        .args(args)
        .arg(format!("https://app.test:{port}{target}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aioquic: run scripts/install-deps")
}

fn disconnects(t: &Thrust) -> usize {
    t.app_entries()
        .iter()
        .filter(|e| e["event"] == "disconnected")
        .count()
}

/// Waits until the app holds the /hang request, then tells the client to
/// go (by creating `go`), and expects the app to see its request
/// cancelled.
fn app_sees_the_request_cancelled(t: &Thrust, go: &Path) {
    assert!(
        wait_until(Duration::from_secs(10), || !t
            .app_requests("/hang")
            .is_empty()),
        "the request never reached the app"
    );
    std::fs::write(go, b"").unwrap();
    let cancelled = wait_until(Duration::from_secs(10), || disconnects(t) == 1);
    assert!(
        cancelled,
        "the app's request went on: {:?}",
        t.app_entries()
    );
}

#[test]
fn http1_a_client_that_leaves_cancels_the_apps_request() {
    let dir = tempfile::tempdir().unwrap();
    let t = Thrust::start_ready(Options::app());
    let mut client = connect(t.port);
    client
        .write_all(b"GET /hang?seconds=20 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let go = dir.path().join("go");
    let leaving = std::thread::spawn({
        let go = go.clone();
        move || {
            wait_until(Duration::from_secs(20), || go.exists());
            drop(client);
        }
    });
    app_sees_the_request_cancelled(&t, &go);
    leaving.join().unwrap();
}

#[test]
fn http2_a_stream_reset_cancels_the_apps_request() {
    let dir = tempfile::tempdir().unwrap();
    let (t, https, _) = start(dir.path(), &[]);
    let go = dir.path().join("go");
    let (port, go_arg) = (https.to_string(), go.to_string_lossy().into_owned());
    let client = h2_client(&[
        "cancel",
        &port,
        "/hang?seconds=20",
        "--when",
        &go_arg,
        "--seconds",
        "15",
    ]);
    app_sees_the_request_cancelled(&t, &go);
    let report = report(client);
    assert_eq!(report["status"], Value::Null, "{report}");
}

#[test]
fn http3_a_closed_connection_cancels_the_apps_request() {
    let dir = tempfile::tempdir().unwrap();
    let (t, https, ca) = start(dir.path(), &[]);
    let go = dir.path().join("go");
    let client = h3_spawn(
        https,
        &ca,
        "/hang?seconds=20",
        &["--close-when", go.to_str().unwrap()],
    );
    app_sees_the_request_cancelled(&t, &go);
    client.wait_with_output().unwrap();
}

/// thrust with HTTP_WRITE_TIMEOUT at 2 s (and the idle timeout far off):
/// the log line of a 500 MB download whose client stopped reading must
/// come, short, soon after the timeout — the stream (and the app
/// connection behind it) is let go.
fn stalled_download_is_let_go(t: &Thrust) -> Value {
    let line = t.wait_log(Duration::from_secs(12), |l| l["path"] == "/download");
    let line = line.expect("the stalled answer was never let go");
    assert_eq!(line["status"], 200, "{line}");
    assert!(
        line["resp_content_length"].as_u64().unwrap_or(0) < 500_000_000,
        "{line}"
    );
    line
}

const STALL: [(&str, &str); 2] = [("HTTP_WRITE_TIMEOUT", "2"), ("HTTP_IDLE_TIMEOUT", "120")];

#[test]
fn http1_a_stalled_reader_is_cut_off_after_the_write_timeout() {
    let t = Thrust::start_ready(
        Options::app()
            .env(STALL[0].0, STALL[0].1)
            .env(STALL[1].0, STALL[1].1),
    );
    let mut client = connect(t.port);
    client
        .write_all(b"GET /download?bytes=500000000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    stalled_download_is_let_go(&t);
}

#[test]
fn http2_a_stalled_reader_is_cut_off_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (t, https, _) = start(dir.path(), &STALL);
    let port = https.to_string();
    let client = h2_client(&[
        "stall",
        &port,
        "/download?bytes=500000000",
        "--seconds",
        "8",
    ]);
    stalled_download_is_let_go(&t);
    let report = report(client);
    // RST_STREAM with CANCEL (8): the client sees the answer abandoned.
    assert!(
        report["resets"]
            .as_array()
            .unwrap()
            .contains(&Value::from(8)),
        "{report}"
    );
}

#[test]
fn http3_a_stalled_reader_is_cut_off_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (t, https, ca) = start(dir.path(), &STALL);
    let mut client = h3_spawn(
        https,
        &ca,
        "/download?bytes=500000000",
        &["--digest", "--timeout", "60"],
    );
    // The client stops once the answer flows: it takes nothing more.
    assert!(wait_until(Duration::from_secs(10), || !t
        .app_requests("/download")
        .is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(client.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    stalled_download_is_let_go(&t);
    client.kill().unwrap();
    client.wait().unwrap();
}

#[test]
fn a_malformed_content_length_never_reaches_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let (t, https, ca) = start(dir.path(), &[]);
    let http1 = raw(
        t.port,
        b"POST /length HTTP/1.1\r\nHost: app.test\r\nContent-Length: +5\r\n\r\nhello",
    )
    .unwrap();
    assert_eq!(http1.status, 400);
    // The five bytes a "+5" would have let through, as the app might read it.
    let hello = dir.path().join("hello");
    std::fs::write(&hello, b"hello").unwrap();
    // HTTP/2: the h2 crate refuses the stream itself (RST_STREAM with
    // PROTOCOL_ERROR, as RFC 9113 §8.1.1 allows for malformed requests).
    let port = https.to_string();
    let http2 = report(h2_client(&[
        "get",
        &port,
        "/length",
        "--header",
        "content-length: +5",
    ]));
    assert_eq!(http2["resets"], serde_json::json!([1]), "{http2}");
    let (ok, http3, stderr) = h3_client(
        https,
        &ca,
        "app.test",
        "/length",
        &[
            "--method",
            "POST",
            "--data-file",
            hello.to_str().unwrap(),
            "--header",
            "Content-Length: +5",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(http3[0]["status"], 400, "{http3:?}");
    assert!(t.app_requests("/length").is_empty());
}

#[test]
fn a_host_other_than_the_authority_is_refused_on_http2_and_http3() {
    let dir = tempfile::tempdir().unwrap();
    let (t, https, ca) = start(dir.path(), &[]);
    let port = https.to_string();
    let status = |host: &str| {
        let header = format!("host: {host}");
        report(h2_client(&["get", &port, "/host", "--header", &header]))["status"].clone()
    };
    assert_eq!(status("other.test"), 400);
    // The same name, in other case or with the scheme's default port.
    assert_eq!(status("APP.test"), 200);
    assert_eq!(status("app.test:443"), 200);
    // HTTP/3: the h3 crate refuses the stream itself (H3_MESSAGE_ERROR,
    // 0x10e, RFC 9114 §4.1.2) unless both are byte for byte the same.
    let h3_answer = |host: &str| {
        let header = format!("Host: {host}");
        let (ok, mut answers, stderr) =
            h3_client(https, &ca, "app.test", "/host", &["--header", &header]);
        assert!(ok && !answers.is_empty(), "{stderr}");
        answers.remove(0)
    };
    let refused = h3_answer("other.test");
    assert_eq!(
        (refused["status"].clone(), refused["reset"].clone()),
        (Value::Null, Value::from(0x10e)),
        "{refused}"
    );
    assert_eq!(h3_answer(&format!("app.test:{https}"))["status"], 200);
    let seen: Vec<_> = t
        .app_requests("/host")
        .iter()
        .map(|r| r["headers"]["host"].clone())
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter().all(|h| !h.to_string().contains("other")),
        "{seen:?}"
    );
}
