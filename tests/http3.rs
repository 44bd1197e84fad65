//! HTTP/3 over QUIC on the HTTPS port's UDP twin (THRUST_HTTP3, SPEC §9),
//! driven by a real HTTP/3 client: aioquic's, from tests/apps/h3_client.py
//! (installed by scripts/install-deps into target/tools/aioquic).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// thrust with a static certificate for app.test and HTTP/3 on.
fn start_h3(dir: &Path, extra: &[(&'static str, &str)]) -> (Thrust, u16, PathBuf) {
    let (cert, key) = self_signed_app_test(dir);
    let https_port = free_port();
    let mut options = Options::app()
        .env("SSL_CERT_PATH", cert.to_string_lossy())
        .env("SSL_KEY_PATH", key.to_string_lossy())
        .env("HTTPS_PORT", https_port.to_string())
        .env("THRUST_HTTP3", "1");
    for (name, value) in extra {
        options = options.env(name, *value);
    }
    (Thrust::start_ready(options), https_port, cert)
}

/// The HTTP/3 client's answers (one JSON object per request) for `target`
/// on app.test at 127.0.0.1:`port`, trusting `ca`.
fn h3(port: u16, ca: &Path, target: &str, args: &[&str]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/tools/aioquic/bin/python");
    let url = format!("https://app.test:{port}{target}");
    let out = Command::new(&python)
        .arg(root.join("tests/apps/h3_client.py"))
        .args(["--connect", "127.0.0.1", "--ca", ca.to_str().unwrap()])
        .args(args)
        .arg(&url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} is required ({e}): run scripts/install-deps",
                python.display()
            )
        });
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        out.status.success(),
        "h3_client {url}: {answers:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answers
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
        .wait_log(std::time::Duration::from_secs(5), |line| {
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
