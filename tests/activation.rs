//! Socket activation: thrust serves the sockets systemd passes it
//! (`LISTEN_FDS`), here through Debian's `systemd-socket-activate`.

mod common;

use std::time::Duration;

use common::*;

/// The app behind a shell that records what the app inherits: its
/// environment and its open descriptors.
fn recording_app(dir: &str) -> Options<'static> {
    let script = format!(
        "env > {dir}/app.env; ls -l /proc/$$/fd > {dir}/app.fds; exec python3 {}",
        app_script().display()
    );
    Options::command(&["sh", "-c", &script])
}

fn address(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Waits until the launcher listens on `port` (the first connection also
/// starts thrust).
fn wait_for_socket(port: u16) {
    let listening = wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        listening,
        "systemd-socket-activate never listened on {port}"
    );
}

#[test]
fn a_passed_socket_is_served_instead_of_http_port() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().to_str().unwrap().to_string();
    let passed = free_port();
    let mut options = recording_app(&marker);
    options.activation = Some((vec![address(passed)], "http".into()));
    let t = Thrust::start(options);
    wait_for_socket(passed);
    // A request while the app boots is answered once it is up.
    let r = get(passed, "/hello").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello from app\n"));
    assert_eq!(get(passed, "/up").unwrap().status, 200);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", t.port)).is_err(),
        "HTTP_PORT was bound although a socket was passed"
    );
    let started = t
        .wait_log(Duration::from_secs(5), |l| l["msg"] == "Server started")
        .unwrap();
    assert_eq!(started["http"], address(passed));

    // The app inherits neither the protocol's variables nor the socket.
    let env = std::fs::read_to_string(dir.path().join("app.env")).unwrap();
    assert!(!env.contains("LISTEN_"), "{env}");
    let fds = std::fs::read_to_string(dir.path().join("app.fds")).unwrap();
    assert!(!fds.contains("socket:"), "{fds}");
}

#[test]
fn two_sockets_are_matched_to_http_and_https_by_name_or_order() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    // Named in the opposite order of the addresses, then unnamed.
    for names in ["https:http", ""] {
        let (first, second) = (free_port(), free_port());
        let (http, https) = if names.is_empty() {
            (first, second)
        } else {
            (second, first)
        };
        let mut options = Options::app()
            .env("SSL_CERT_PATH", cert.display().to_string())
            .env("SSL_KEY_PATH", key.display().to_string())
            .env("HTTPS_PORT", free_port().to_string());
        options.activation = Some((vec![address(first), address(second)], names.into()));
        let _t = Thrust::start(options);
        wait_for_socket(first);
        // With TLS on, the HTTP socket redirects a covered host...
        let r = request(http, "GET", "/page", &[("Host", "localhost")], b"").unwrap();
        assert_eq!(r.status, 301, "names {names:?}");
        assert_eq!(r.header("location"), Some("https://localhost/page"));
        // ...and the HTTPS socket serves the app.
        assert_eq!(
            https_get(https, &cert, "localhost", "/hello").as_deref(),
            Ok("hello from app\n"),
            "names {names:?}"
        );
    }
}

#[test]
fn sockets_passed_beyond_the_two_thrust_serves_do_not_reach_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().to_str().unwrap().to_string();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut options = recording_app(&marker);
    options.activation = Some((
        ports.iter().map(|p| address(*p)).collect(),
        "http:metrics:admin".into(),
    ));
    let _t = Thrust::start(options);
    wait_for_socket(ports[0]);
    assert_eq!(get(ports[0], "/hello").unwrap().status, 200);
    let fds = std::fs::read_to_string(dir.path().join("app.fds")).unwrap();
    assert!(!fds.contains("socket:"), "{fds}");
}
