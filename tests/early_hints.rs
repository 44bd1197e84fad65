//! 103 Early Hints from Debian's Puma (`--early-hints`) through thrust: the
//! app's hints reach HTTP/1.1 and HTTP/2 clients while the page is still
//! being rendered, then the answer; HTTP/1.0 clients get the answer alone.
//! HTTP/2 is served on the h2 crate for this: a request in flight over it
//! still finishes after SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;

const STYLE: &str = "link: </assets/application-4f1e2a9b.css>; rel=preload; as=style";
const SCRIPT: &str = "link: </assets/application-9c0d7e3a.js>; rel=preload; as=script";
const IMAGE: &str = "link: </assets/logo-1b2c3d4e.svg>; rel=preload; as=image";

/// thrust in front of Puma with early hints on; the app's pages wait for
/// files in the returned directory.
fn start(extra: &[(&'static str, &str)]) -> (Thrust, tempfile::TempDir) {
    let release = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut options = Options::command(&[
        "puma",
        "--early-hints",
        "-C",
        root.join("demo/puma.rb").to_str().unwrap(),
        root.join("tests/apps/early_hints.ru").to_str().unwrap(),
    ])
    .env("RELEASE_DIR", release.path().to_str().unwrap());
    for (name, value) in extra {
        options = options.env(name, *value);
    }
    let t = Thrust::start(options);
    t.wait_ready();
    (t, release)
}

/// Lets the app answer the page that waits for `name`.
fn release(dir: &tempfile::TempDir, name: &str) {
    std::fs::write(dir.path().join(name), b"").unwrap();
}

/// Reads from `stream` until what was read ends with `end`.
fn read_until(stream: &mut TcpStream, read: &mut Vec<u8>, end: &str) -> String {
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(read).ends_with(end) {
        let n = stream.read(&mut chunk).expect("thrust answers in time");
        assert!(
            n > 0,
            "closed early; read: {}",
            String::from_utf8_lossy(read)
        );
        read.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(read).into_owned()
}

fn client(port: u16) -> TcpStream {
    let stream = connect(port);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn http1_clients_get_the_apps_hints_while_the_page_renders_then_the_page() {
    let (t, dir) = start(&[]);
    let mut stream = client(t.port);
    stream
        .write_all(b"GET /page?one HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut read = Vec::new();
    // Both hints arrive while the app still waits to be released.
    let hints = read_until(&mut stream, &mut read, &format!("{IMAGE}\r\n\r\n"));
    assert_eq!(
        hints,
        format!(
            "HTTP/1.1 103 Early Hints\r\n{STYLE}\r\n{SCRIPT}\r\n\r\n\
             HTTP/1.1 103 Early Hints\r\n{IMAGE}\r\n\r\n"
        )
    );
    release(&dir, "one");
    let whole = read_until(&mut stream, &mut read, "<p>rendered</p>\n");
    let answer = &whole[hints.len()..];
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(!answer.contains("103"), "{answer}");

    // The connection goes on: a page without hints is answered as before.
    stream
        .write_all(b"GET /no-hints HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read.clear();
    let plain = read_until(&mut stream, &mut read, "plain\n");
    assert!(plain.starts_with("HTTP/1.1 200 OK\r\n"), "{plain}");
}

#[test]
fn pipelined_requests_get_each_their_hints_before_their_own_answer() {
    let (t, dir) = start(&[]);
    release(&dir, "second");
    let mut stream = client(t.port);
    stream
        .write_all(
            b"GET /page?first HTTP/1.1\r\nHost: t\r\n\r\nGET /page?second HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let mut read = Vec::new();
    read_until(&mut stream, &mut read, &format!("{IMAGE}\r\n\r\n"));
    release(&dir, "first");
    let mut whole = read_until(&mut stream, &mut read, "<p>rendered</p>\n");
    if whole.matches("<p>rendered</p>").count() < 2 {
        read.clear();
        whole += &read_until(&mut stream, &mut read, "<p>rendered</p>\n");
    }
    let messages: Vec<&str> = whole
        .split("\r\n\r\n")
        .filter_map(|part| part.lines().find(|l| l.starts_with("HTTP/1.1 ")))
        .collect();
    assert_eq!(
        messages,
        [
            "HTTP/1.1 103 Early Hints",
            "HTTP/1.1 103 Early Hints",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 103 Early Hints",
            "HTTP/1.1 103 Early Hints",
            "HTTP/1.1 200 OK",
        ],
        "{whole}"
    );
}

#[test]
fn http1_0_clients_get_the_answer_alone() {
    let (t, dir) = start(&[]);
    release(&dir, "old");
    let r = raw(t.port, b"GET /page?old HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<!doctype html><p>rendered</p>\n");
}

/// Reads `path` with the HTTP/2 client (tests/apps/h2_hints_client.py),
/// which lets the app answer once it has the hints.
fn http2_client(port: u16, path: &str, release: &Path, tls: bool) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/h2_hints_client.py");
    let mut args = vec![
        script.to_str().unwrap().to_string(),
        port.to_string(),
        path.to_string(),
        release.to_str().unwrap().to_string(),
    ];
    if tls {
        args.push("tls".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Debian's Python, which has python3-h2 (scripts/install-deps).
    let out = run_tool("/usr/bin/python3", &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_hints_then_page(seen: &serde_json::Value) {
    assert_eq!(
        seen["statuses"],
        serde_json::json!(["103", "103", "200"]),
        "{seen}"
    );
    let link = |line: &str| line.trim_start_matches("link: ").to_string();
    assert_eq!(
        seen["hints"],
        serde_json::json!([[link(STYLE), link(SCRIPT)], [link(IMAGE)]]),
        "{seen}"
    );
    assert_eq!(seen["released_after_hints"], true, "{seen}");
    assert_eq!(seen["body"], "<!doctype html><p>rendered</p>\n");
}

#[test]
fn http2_clients_get_the_hints_as_informational_headers_then_the_page() {
    let (t, dir) = start(&[("H2C_ENABLED", "1")]);
    let seen = http2_client(t.port, "/page?h2c", &dir.path().join("h2c"), false);
    assert_hints_then_page(&seen);

    // Over TLS (ALPN h2) as browsers use it.
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_app_test(certs.path());
    let https_port = free_port();
    let (t, dir) = start(&[
        ("SSL_CERT_PATH", cert.to_str().unwrap()),
        ("SSL_KEY_PATH", key.to_str().unwrap()),
        ("HTTPS_PORT", &https_port.to_string()),
    ]);
    let seen = http2_client(https_port, "/page?tls", &dir.path().join("tls"), true);
    assert_hints_then_page(&seen);

    // HTTP/1.1 over TLS: the hints go through the TLS stream as well.
    release(&dir, "tls1");
    let url = format!("https://app.test:{https_port}/page?tls1");
    let resolve = format!("app.test:{https_port}:127.0.0.1");
    let out = run_tool(
        "curl",
        &[
            "-si",
            "--http1.1",
            "--max-time",
            "10",
            "-k",
            "--resolve",
            &resolve,
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let statuses: Vec<&str> = text.lines().filter(|l| l.starts_with("HTTP/")).collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 103 Early Hints",
            "HTTP/1.1 103 Early Hints",
            "HTTP/1.1 200 OK"
        ],
        "{text}"
    );
    assert!(text.ends_with("<p>rendered</p>\n"), "{text}");
    drop(t);
}

#[test]
fn http2_requests_in_flight_finish_after_sigterm() {
    let (mut t, dir) = start(&[("H2C_ENABLED", "1")]);
    let url = format!("http://127.0.0.1:{}/page?late", t.port);
    let client = std::thread::spawn(move || {
        run_tool(
            "curl",
            &[
                "-s",
                "--http2-prior-knowledge",
                "--max-time",
                "15",
                "-w",
                " %{http_code} %{http_version}",
                &url,
            ],
        )
    });
    let arrived = dir.path().join("late.arrived");
    assert!(wait_until(Duration::from_secs(10), || arrived.exists()));
    t.signal(nix::sys::signal::Signal::SIGTERM);
    release(&dir, "late");
    let out = client.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<!doctype html><p>rendered</p>\n 200 2"
    );
    assert!(t.wait_exit(Duration::from_secs(10)).is_some());
}
