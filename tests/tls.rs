//! TLS with static certificates, HTTPS redirects and HTTP/2 over TLS (SPEC §9).

mod common;

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

struct Cert {
    cert: PathBuf,
    key: PathBuf,
}

/// A self-signed certificate for `names`, written as PEM files in `dir`.
fn self_signed(dir: &Path, tag: &str, names: &[&str]) -> Cert {
    let generated =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = dir.join(format!("{tag}.crt"));
    let key = dir.join(format!("{tag}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    Cert { cert, key }
}

fn start_tls(cert: &Cert, extra: &[(&'static str, &str)]) -> (Thrust, u16) {
    let https_port = free_port();
    let mut options = Options::app()
        .env("SSL_CERT_PATH", cert.cert.to_string_lossy())
        .env("SSL_KEY_PATH", cert.key.to_string_lossy())
        .env("HTTPS_PORT", https_port.to_string());
    for (name, value) in extra {
        options = options.env(name, *value);
    }
    (Thrust::start_ready(options), https_port)
}

/// curl over TLS to `host` (resolved to 127.0.0.1), trusting `ca`; returns
/// (status line, body, HTTP version) or the curl error.
fn curl_tls(
    port: u16,
    host: &str,
    ca: &Path,
    target: &str,
    extra: &[&str],
) -> Result<(u16, String, String), String> {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{target}");
    let mut args = vec![
        "-s",
        "-S",
        "--max-time",
        "10",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = run_tool("curl", &args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, version) = tail.split_once(' ').unwrap();
    Ok((code.parse().unwrap(), body.to_string(), version.to_string()))
}

#[test]
fn https_serves_the_app_over_http2_and_http1_with_tls_12_and_13() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test", "localhost"]);
    let (t, https) = start_tls(&cert, &[]);

    let (status, body, version) =
        curl_tls(https, "app.test", &cert.cert, "/echo?tls", &["--http2"]).unwrap();
    assert_eq!((status, version.as_str()), (200, "2"));
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["host"], format!("app.test:{https}"));
    assert_eq!(seen["target"], "/echo?tls");

    for flags in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        let (status, _, _) = curl_tls(https, "app.test", &cert.cert, "/", &flags).unwrap();
        assert_eq!(status, 200, "{flags:?}");
    }
    let (status, _, version) =
        curl_tls(https, "app.test", &cert.cert, "/", &["--http1.1"]).unwrap();
    assert_eq!((status, version.as_str()), (200, "1.1"));

    // Health on HTTPS too; and h2load through the whole pipeline.
    let (status, body, _) = curl_tls(https, "app.test", &cert.cert, "/up", &[]).unwrap();
    assert_eq!((status, body.as_str()), (200, "OK"));
    let out = run_tool(
        "h2load",
        &[
            "-n",
            "300",
            "-c",
            "4",
            "-m",
            "10",
            &format!("https://127.0.0.1:{https}/"),
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("300 succeeded, 0 failed, 0 errored") && report.contains("h2"),
        "{report}"
    );
    drop(t);
}

#[test]
fn a_wrong_http2_preface_gets_goaway_with_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test"]);
    let (_t, https) = start_tls(&cert, &[]);
    // A client that agrees on h2 by ALPN, then does not speak it.
    let client = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {https}), timeout=5), server_hostname="app.test")
s.sendall(b"INVALID CONNECTION PREFACE\r\n\r\n")
answer = b""
while True:
    data = s.recv(4096)
    if not data:
        break
    answer += data
print(s.selected_alpn_protocol(), answer.hex())
"#
    );
    let out = run_tool("python3", &["-c", &client]);
    let text = String::from_utf8_lossy(&out.stdout);
    // An empty SETTINGS frame, then GOAWAY: last stream 0, PROTOCOL_ERROR (1).
    assert_eq!(
        text.trim(),
        "h2 0000000400000000000000080700000000000000000000000001",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_tell_when_the_certificate_expires_for_each_of_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "site", &["localhost", "*.example.test"]);
    let metrics_port = free_port().to_string();
    let (_t, _) = start_tls(&cert, &[("THRUST_METRICS_PORT", &metrics_port)]);
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(&std::fs::read(&cert.cert).unwrap()).unwrap();
    let not_after = parsed
        .parse_x509()
        .unwrap()
        .validity()
        .not_after
        .timestamp() as f64;
    let samples = scrape(metrics_port.parse().unwrap());
    for name in ["localhost", "*.example.test"] {
        let key = format!("thrust_certificate_expiry_timestamp_seconds{{domain=\"{name}\"}}");
        assert_eq!(samples.get(&key), Some(&not_after), "{key}: {samples:?}");
    }
}

#[test]
fn http2_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test"]);
    let (_t, https) = start_tls(&cert, &[("THRUST_HTTP2", "0")]);
    let (status, _, version) = curl_tls(https, "app.test", &cert.cert, "/", &["--http2"]).unwrap();
    assert_eq!((status, version.as_str()), (200, "1.1"));
}

#[test]
fn the_http_port_redirects_covered_hosts_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test", "*.wild.test"]);
    let (t, _) = start_tls(&cert, &[]);
    let r = request(
        t.port,
        "GET",
        "/path?q=1&x=%20",
        &[("Host", "app.test:8080")],
        b"",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://app.test/path?q=1&x=%20"))
    );
    let r = request(t.port, "GET", "/", &[("Host", "a.wild.test")], b"").unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://a.wild.test/"))
    );
    for host in ["evil.example", "wild.test", "a.b.wild.test"] {
        let r = request(t.port, "GET", "/", &[("Host", host)], b"").unwrap();
        assert_eq!(r.status, 421, "{host}");
    }
    // Health checks and ACME challenges are answered on HTTP, never redirected.
    let r = request(t.port, "GET", "/up", &[("Host", "evil.example")], b"").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let r = request(
        t.port,
        "GET",
        "/.well-known/acme-challenge/token",
        &[("Host", "app.test")],
        b"",
    )
    .unwrap();
    assert_eq!(r.text(), "hello from app\n");
    assert!(
        t.app_requests("/").is_empty(),
        "redirected requests never reach the app"
    );
}

#[test]
fn body_bytes_read_after_an_early_answer_are_not_taken_for_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test"]);
    let (t, _) = start_tls(
        &cert,
        &[("HTTP_READ_TIMEOUT", "1"), ("HTTP_IDLE_TIMEOUT", "10")],
    );
    // The HTTP port redirects before reading the body; hyper then reads
    // the rest of it. Every line of this body looks like a smuggled head.
    let lookalike = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = lookalike.repeat(12_000 / lookalike.len());
    let mut s = connect(t.port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(format!("{head}{body}").as_bytes()).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let r = read_response(&mut reader, false).unwrap();
    assert_eq!(r.header("location"), Some("https://app.test/form"));
    // The next request comes after longer than HTTP_READ_TIMEOUT: the
    // connection is idle (HTTP_IDLE_TIMEOUT), not inside a slow head.
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let r = read_response(&mut reader, false).unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://app.test/next")),
        "{}",
        t.log_text()
    );
}

#[test]
fn certificate_files_are_reloaded_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed(dir.path(), "first", &["app.test"]);
    let live = Cert {
        cert: dir.path().join("live.crt"),
        key: dir.path().join("live.key"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let (t, https) = start_tls(&live, &[]);

    // A stream that spans the swap.
    let url = format!("https://app.test:{https}/sse?n=5&interval=0.8");
    let resolve = format!("app.test:{https}:127.0.0.1");
    let swap_dir = dir.path().to_path_buf();
    let swapper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let second = self_signed(&swap_dir, "second", &["app.test", "renamed.test"]);
        std::fs::copy(&second.key, swap_dir.join("live.key")).unwrap();
        std::fs::copy(&second.cert, swap_dir.join("live.crt")).unwrap();
        second
    });
    let stream = std::process::Command::new("curl")
        .args([
            "-s",
            "-N",
            "--max-time",
            "20",
            "--cacert",
            first.cert.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ])
        .output()
        .unwrap();
    let second = swapper.join().unwrap();
    assert!(
        t.wait_log(Duration::from_secs(1), |l| l["msg"]
            == "Certificate reloaded")
            .is_some(),
        "reloaded while the stream was open"
    );
    assert_eq!(
        String::from_utf8_lossy(&stream.stdout)
            .matches("data: event")
            .count(),
        5,
        "the open stream survived the reload"
    );

    let reloaded = wait_until(Duration::from_secs(10), || {
        curl_tls(https, "renamed.test", &second.cert, "/", &[]).is_ok()
    });
    assert!(reloaded, "the new certificate is served");
    assert!(
        curl_tls(https, "app.test", &first.cert, "/", &[]).is_err(),
        "the old certificate is gone"
    );

    // A renewal that leaves the pair broken: the served certificate stays,
    // and the warning comes once, not at every check (every 2 s).
    std::fs::write(dir.path().join("live.key"), "half-written").unwrap();
    let warned = |t: &Thrust| {
        t.log_lines()
            .iter()
            .filter(|l| {
                l["level"] == "WARN" && l["msg"].as_str().is_some_and(|m| m.contains("do not load"))
            })
            .count()
    };
    assert!(wait_until(Duration::from_secs(5), || warned(&t) == 1));
    assert!(curl_tls(https, "renamed.test", &second.cert, "/", &[]).is_ok());
    // (That later checks of the same broken pair stay quiet is
    // static_cert's unit test: no wait on the 2-second poll here.)
    assert_eq!(warned(&t), 1, "{}", t.log_text());
}

#[test]
fn unreadable_or_mismatched_files_stop_startup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let one = self_signed(dir.path(), "one", &["app.test"]);
    let two = self_signed(dir.path(), "two", &["app.test"]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for (cert, key, named) in [
        (&one.cert, &two.key, "SSL_KEY_PATH"),
        (&garbage, &one.key, "SSL_CERT_PATH"),
        (&one.cert, &garbage, "SSL_KEY_PATH"),
    ] {
        let out = std::process::Command::new(THRUST)
            .args(["sleep", "5"])
            .env("HTTP_PORT", free_port().to_string())
            .env("HTTPS_PORT", free_port().to_string())
            .env("SSL_CERT_PATH", cert)
            .env("SSL_KEY_PATH", key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
}

#[test]
fn websocket_over_http2_is_bridged_to_an_http1_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test"]);
    let (t, https) = start_tls(&cert, &[]);
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/h2_ws_client.py");
    let out = run_tool(
        "/usr/bin/python3",
        &[
            client.to_str().unwrap(),
            "app.test",
            &https.to_string(),
            "/ws",
            "hello",
            "over h2",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(result["connect_protocol"], true, "{result}");
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["echoes"], serde_json::json!(["hello", "over h2"]));
    // The app saw an ordinary HTTP/1.1 WebSocket handshake.
    let handshake = &t.app_requests("/ws")[0];
    assert_eq!(handshake["method"], "GET");
    assert_eq!(handshake["headers"]["upgrade"], "websocket");
    assert_eq!(
        handshake["headers"]["sec-websocket-key"]
            .as_str()
            .unwrap()
            .len(),
        24
    );
    assert_eq!(handshake["headers"]["x-forwarded-proto"], "https");
}

/// Runs an abusive HTTP/2 client while ordinary clients keep asking; returns
/// the abuser's report once both are done.
fn abuse_while_serving(mode: &str, n: &str) -> (serde_json::Value, Thrust) {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test"]);
    let (t, https) = start_tls(&cert, &[("LOG_REQUESTS", "0")]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/h2_abuse.py");
    let (mode, n, port) = (mode.to_string(), n.to_string(), https.to_string());
    let abuser = std::thread::spawn(move || {
        run_tool(
            "/usr/bin/python3",
            &[script.to_str().unwrap(), &mode, &port, &n],
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        let answer = curl_tls(
            https,
            "app.test",
            &cert.cert,
            &format!("/?during={i}"),
            &["--http2"],
        );
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Ok(200),
            "an ordinary client was not served: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = abuser.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    eprintln!("{report} (thrust's peak: {} KiB)", t.memory_kib().1);
    // And thrust is still there afterwards.
    assert_eq!(
        curl_tls(https, "app.test", &cert.cert, "/", &["--http2"]).map(|a| a.0),
        Ok(200)
    );
    drop(dir);
    (report, t)
}

#[test]
fn http2_rapid_reset_is_cut_off() {
    let (report, _t) = abuse_while_serving("rapid_reset", "5000");
    // hyper/h2 answer a reset flood with GOAWAY (ENHANCE_YOUR_CALM = 11).
    assert!(
        report["goaway"] == 11 || report["closed"] == true,
        "{report}"
    );
}

#[test]
fn http2_stream_floods_are_capped() {
    let (report, t) = abuse_while_serving("streams", "1000");
    assert!(
        report["resets"].as_u64().unwrap_or(0) >= 700 || report.get("goaway").is_some(),
        "streams beyond the limit are refused: {report}"
    );
    assert!(
        t.app_requests("/hang").len() <= 250,
        "{} hangs reached the app",
        t.app_requests("/hang").len()
    );
}

#[test]
fn http2_huge_header_lists_are_refused() {
    let (report, t) = abuse_while_serving("big_headers", "200000");
    assert!(
        report.get("responses").is_none() || report["responses"] == 0,
        "{report}"
    );
    assert!(
        report.get("resets").is_some()
            || report.get("goaway").is_some()
            || report["closed"] == true,
        "{report}"
    );
    assert!(t
        .app_requests("/")
        .iter()
        .all(|r| r["headers"].get("x-big-0").is_none()));
}

#[test]
fn http2_slow_window_clients_do_not_stop_others() {
    let (report, _t) = abuse_while_serving("slow_window", "100");
    assert!(report.get("error").is_none(), "{report}");
}

#[test]
fn http2_over_tls_streams_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(dir.path(), "app", &["app.test"]);
    let (_t, https) = start_tls(&cert, &[]);
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, vec![b'u'; 20_000_000]).unwrap();
    let data = format!("@{}", upload.display());
    let (status, body, version) = curl_tls(
        https,
        "app.test",
        &cert.cert,
        "/upload",
        &["--http2", "--data-binary", &data],
    )
    .unwrap();
    assert_eq!(
        (status, body.as_str(), version.as_str()),
        (200, "20000000", "2")
    );

    // The first event arrives long before the stream ends.
    let resolve = format!("app.test:{https}:127.0.0.1");
    let url = format!("https://app.test:{https}/sse?n=3&interval=0.7");
    let out = run_tool(
        "curl",
        &[
            "-s",
            "--http2",
            "--cacert",
            cert.cert.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            "-w",
            "%{time_starttransfer} %{time_total}",
            &url,
        ],
    );
    let timings = String::from_utf8_lossy(&out.stdout);
    let (first, total) = timings.split_once(' ').unwrap();
    let (first, total): (f64, f64) = (first.parse().unwrap(), total.parse().unwrap());
    assert!(
        total - first >= 1.0,
        "events were not streamed: first byte {first}s, end {total}s"
    );
}

#[test]
fn rsa_and_ec_keys_in_their_traditional_pem_forms() {
    let dir = tempfile::tempdir().unwrap();
    for (tag, make_key) in [
        ("rsa", vec!["genrsa", "-traditional", "-out"]),
        (
            "ec",
            vec![
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
            ],
        ),
    ] {
        let key = dir.path().join(format!("{tag}.key"));
        let cert = dir.path().join(format!("{tag}.crt"));
        let mut args = make_key.clone();
        args.push(key.to_str().unwrap());
        if tag == "rsa" {
            args.push("2048");
        }
        assert!(run_tool("openssl", &args).status.success(), "{tag} key");
        let made = run_tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-key",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
                "-subj",
                "/CN=app.test",
                "-addext",
                "subjectAltName=DNS:app.test",
                "-days",
                "2",
            ],
        );
        assert!(made.status.success(), "{tag} certificate");
        let header = std::fs::read_to_string(&key).unwrap();
        assert!(
            header.starts_with(if tag == "rsa" {
                "-----BEGIN RSA PRIVATE KEY"
            } else {
                "-----BEGIN EC PRIVATE KEY"
            }),
            "{header}"
        );
        let (_t, https) = start_tls(
            &Cert {
                cert: cert.clone(),
                key,
            },
            &[],
        );
        let (status, _, _) = curl_tls(https, "app.test", &cert, "/", &[]).unwrap();
        assert_eq!(status, 200, "{tag}");
    }
}

/// thrust's peak memory after an abusive HTTP/2 client, in MiB: each shape
/// must cost thrust a bounded amount, whatever the client sends.
fn peak_mib(t: &Thrust) -> u64 {
    t.memory_kib().1 / 1024
}

#[test]
fn http2_continuation_floods_are_cut_off() {
    // 500 CONTINUATION frames of 16 KiB: 8 MB of one header block.
    let (report, t) = abuse_while_serving("continuation", "500");
    assert!(
        report.get("goaway").is_some() || report["closed"] == true,
        "{report}"
    );
    assert!(peak_mib(&t) < 64, "peak {} MiB", peak_mib(&t));
    assert!(t
        .app_requests("/")
        .iter()
        .all(|r| r["headers"].get("x-continue").is_none()));
}

#[test]
fn http2_ping_and_settings_floods_cost_little() {
    for mode in ["ping", "settings"] {
        // 20,000 frames the flooder never reads the answers to.
        let (report, t) = abuse_while_serving(mode, "20000");
        assert!(
            peak_mib(&t) < 64,
            "{mode}: peak {} MiB {report}",
            peak_mib(&t)
        );
    }
}

#[test]
fn http2_empty_data_floods_cost_little() {
    // A POST whose body is 50,000 empty DATA frames.
    let (report, t) = abuse_while_serving("empty_data", "50000");
    assert!(peak_mib(&t) < 64, "peak {} MiB {report}", peak_mib(&t));
}

#[test]
fn http2_hpack_bombs_are_refused_before_they_grow() {
    // One 4 kB header named 50,000 times: 200 MB of headers from 54 kB.
    let (report, t) = abuse_while_serving("hpack_bomb", "50000");
    assert!(
        report.get("rst_stream").is_some()
            || report.get("goaway").is_some()
            || report["closed"] == true,
        "{report}"
    );
    assert!(peak_mib(&t) < 64, "peak {} MiB", peak_mib(&t));
    assert!(t
        .app_requests("/")
        .iter()
        .all(|r| r["headers"].get("x-bomb").is_none()));
}
