//! THRUST_PROXY_PROTOCOL: thrust behind an L4 load balancer that opens each
//! connection with a PROXY protocol v1 or v2 header. The client it names is
//! what the app sees in X-Forwarded-For and what the log line says, when the
//! peer is trusted; a connection without a valid header is closed.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: PROXY (or LOCAL) over TCP, IPv4 (family 0x11) or IPv6 (0x21).
fn v2(local: bool, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend([if local { 0x20 } else { 0x21 }, family]);
    header.extend((addresses.len() as u16).to_be_bytes());
    header.extend(addresses);
    header
}

fn v2_tcp6(source: [u8; 16], port: u16) -> Vec<u8> {
    let mut addresses = source.to_vec();
    addresses.extend([0u8; 15]);
    addresses.push(1);
    addresses.extend(port.to_be_bytes());
    addresses.extend(80u16.to_be_bytes());
    v2(false, 0x21, &addresses)
}

/// Sends `header` then a request for `/headers?case=<case>`; the status.
fn through(port: u16, header: &[u8], case: &str) -> u16 {
    let mut stream = connect(port);
    stream.write_all(header).unwrap();
    write!(
        stream,
        "GET /headers?case={case} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(stream), false)
        .unwrap()
        .status
}

/// The X-Forwarded-For the app received for `case`, and the log line's remote_addr.
fn client_seen(t: &Thrust, case: &str) -> (String, String) {
    let target = format!("/headers?case={case}");
    assert!(wait_until(Duration::from_secs(5), || !t
        .app_requests("/headers")
        .is_empty()));
    let entry = t
        .app_requests("/headers")
        .into_iter()
        .find(|e| e["target"] == target.as_str())
        .unwrap_or_else(|| panic!("{case}: the app never saw it"));
    let line = t
        .wait_log(Duration::from_secs(5), |l| {
            l["msg"] == "Request"
                && l["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/headers"))
                && l["query"].as_str().is_some_and(|q| q.contains(case))
        })
        .map(|l| l["remote_addr"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (
        entry["headers"]["x-forwarded-for"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        line,
    )
}

fn proxied_thrust(extra: &[(&'static str, &str)]) -> Thrust {
    let mut options = Options::app().env("THRUST_PROXY_PROTOCOL", "1");
    for (name, value) in extra {
        options = options.env(name, *value);
    }
    Thrust::start(options)
}

/// Sends a LOCAL header (a load balancer's own check) until thrust answers.
fn wait_serving(t: &Thrust) {
    let ready = wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", t.port)).is_ok_and(|mut s| {
            let mut request = v2(true, 0, &[]);
            request.extend(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n");
            s.write_all(&request).is_ok()
                && read_response(&mut BufReader::new(s), false).is_ok_and(|r| r.status == 200)
        })
    });
    assert!(ready, "{}", t.log_text());
}

#[test]
fn a_trusted_load_balancers_header_names_the_client() {
    let t = proxied_thrust(&[]);
    wait_serving(&t);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "v1-tcp4",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 80\r\n".to_vec(),
            "203.0.113.7",
        ),
        (
            "v1-tcp6",
            b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n".to_vec(),
            "2001:db8::7",
        ),
        (
            "v2-tcp4",
            v2(
                false,
                0x11,
                &[198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80],
            ),
            "198.51.100.9",
        ),
        (
            "v2-tcp6",
            v2_tcp6(
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
                5000,
            ),
            "2001:db8::9",
        ),
    ];
    for (case, header, client) in cases {
        assert_eq!(through(t.port, &header, case), 200, "{case}");
        let (forwarded_for, logged) = client_seen(&t, case);
        assert_eq!(forwarded_for, client, "{case}: X-Forwarded-For");
        let logged: std::net::SocketAddr = logged
            .parse()
            .unwrap_or_else(|_| panic!("{case}: {logged}"));
        assert_eq!(
            logged.ip().to_string(),
            client,
            "{case}: the log line's remote_addr"
        );
    }
}

#[test]
fn local_and_unknown_headers_keep_the_peer_and_untrusted_peers_are_not_believed() {
    let t = proxied_thrust(&[]);
    wait_serving(&t);
    assert_eq!(through(t.port, b"PROXY UNKNOWN\r\n", "v1-unknown"), 200);
    assert_eq!(client_seen(&t, "v1-unknown").0, "127.0.0.1");
    assert_eq!(through(t.port, &v2(true, 0, &[]), "v2-local"), 200);
    assert_eq!(client_seen(&t, "v2-local").0, "127.0.0.1");

    // A peer outside THRUST_TRUSTED_PROXIES must send the header too, but
    // the client it names is not believed.
    let strict = proxied_thrust(&[("THRUST_TRUSTED_PROXIES", "10.0.0.0/8")]);
    wait_serving(&strict);
    let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 80\r\n";
    assert_eq!(through(strict.port, header, "untrusted"), 200);
    assert_eq!(client_seen(&strict, "untrusted").0, "127.0.0.1");
}

#[test]
fn a_missing_or_malformed_header_closes_the_connection_with_a_log_line() {
    let t = proxied_thrust(&[]);
    wait_serving(&t);
    for (case, opening) in [
        ("missing", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
        (
            "malformed v1",
            b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "v1 without its end",
            [b"PROXY TCP4 ".to_vec(), vec![b'1'; 120]].concat(),
        ),
        ("v2 cut short", v2(false, 0x11, &[1, 2, 3])),
        // A declared length past what thrust reads: refused before reading it.
        (
            "v2 too long",
            [V2_SIGNATURE, &[0x21, 0x11], &5000u16.to_be_bytes()].concat(),
        ),
    ] {
        let mut stream = connect(t.port);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(&opening).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "{case}: answered {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let closed = t.wait_log(Duration::from_secs(5), |l| {
        l["msg"] == "Connection closed: THRUST_PROXY_PROTOCOL is on"
            && l["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not start with a PROXY protocol header"))
    });
    assert!(closed.is_some(), "{}", t.log_text());
    // The lines are written by thrust's log thread: awaited, not assumed.
    let malformed = || {
        t.log_lines()
            .iter()
            .filter(|l| {
                l["msg"] == "Connection closed: THRUST_PROXY_PROTOCOL is on"
                    && l["error"].as_str().is_some_and(|e| e.contains("malformed"))
            })
            .count()
    };
    wait_until(Duration::from_secs(5), || malformed() >= 4);
    assert_eq!(malformed(), 4, "{}", t.log_text());
    // And the next proper connection is served.
    assert_eq!(through(t.port, b"PROXY UNKNOWN\r\n", "after"), 200);
}

#[test]
fn https_and_http2_are_served_behind_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["app.test".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("app.crt"), dir.path().join("app.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let https = free_port();
    let cert_path = cert.to_string_lossy().to_string();
    let key_path = key.to_string_lossy().to_string();
    let https_port = https.to_string();
    let t = proxied_thrust(&[
        ("SSL_CERT_PATH", &cert_path),
        ("SSL_KEY_PATH", &key_path),
        ("HTTPS_PORT", &https_port),
        // With TLS on nobody is trusted by default.
        ("THRUST_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    wait_serving(&t);
    // curl sends a v1 header naming itself, then TLS, over HTTP/2 and HTTP/1.1.
    let resolve = format!("app.test:{https}:127.0.0.1");
    for (version, case) in [("--http2", "h2"), ("--http1.1", "h1")] {
        let url = format!("https://app.test:{https}/headers?case=tls-{case}");
        let out = run_tool(
            "curl",
            &[
                "-s",
                "-S",
                "--max-time",
                "10",
                "--haproxy-protocol",
                version,
                "--cacert",
                &cert_path,
                "--resolve",
                &resolve,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                &url,
            ],
        );
        let said = String::from_utf8_lossy(&out.stdout);
        let expected = if case == "h2" { "200 2" } else { "200 1.1" };
        assert_eq!(
            said.trim(),
            expected,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(client_seen(&t, &format!("tls-{case}")).0, "127.0.0.1");
    }
    // A header naming another client, then TLS: the app sees that client.
    let script = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
raw.sendall(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n")
context = ssl.create_default_context(cafile=ca)
tls = context.wrap_socket(raw, server_hostname="app.test")
tls.sendall(b"GET /headers?case=tls-named HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
answer = b""
while chunk := tls.recv(65536):
    answer += chunk
print(answer.split(b"\r\n")[0].decode())
"#;
    let out = run_tool("/usr/bin/python3", &["-c", script, &https_port, &cert_path]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "HTTP/1.1 200 OK",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client_seen(&t, "tls-named").0, "203.0.113.7");
    // The HTTP port with TLS on wants the header too: it redirects.
    let mut stream = connect(t.port);
    stream
        .write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 80\r\nGET /x HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(r.status, 301);
}

/// HAProxy from Debian, in TCP mode, stopped when dropped.
struct Haproxy(std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn haproxy_in_front_with_send_proxy_and_send_proxy_v2() {
    let t = proxied_thrust(&[]);
    wait_serving(&t);
    let dir = tempfile::tempdir().unwrap();
    let (v1_port, v2_port) = (free_port(), free_port());
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         listen v1\n  bind 127.0.0.1:{v1_port}\n  server thrust 127.0.0.1:{port} send-proxy\n\
         listen v2\n  bind 127.0.0.1:{v2_port}\n  server thrust 127.0.0.1:{port} send-proxy-v2\n",
        port = t.port
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let _haproxy = Haproxy(
        std::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (scripts/install-deps installs it)"),
    );
    for (case, port) in [("haproxy-v1", v1_port), ("haproxy-v2", v2_port)] {
        assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
            ("127.0.0.1", port)
        )
        .is_ok()));
        // The client connects from 127.0.0.2; thrust's peer is HAProxy (127.0.0.1).
        let url = format!("http://127.0.0.1:{port}/headers?case={case}");
        let out = run_tool(
            "curl",
            &[
                "-s",
                "-S",
                "--max-time",
                "10",
                "--interface",
                "127.0.0.2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(client_seen(&t, case).0, "127.0.0.2", "{case}");
    }
}
