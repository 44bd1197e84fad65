//! End to end with a real app server: Debian's Puma running the demo's
//! config.ru, which behaves like a production Rails app (force_ssl redirects
//! /up, host authorization refuses unknown hosts).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn demo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/demo"))
}

fn puma() -> Options<'static> {
    let demo = demo();
    Options::command(&[
        "puma",
        "-C",
        demo.join("puma.rb").to_str().unwrap(),
        demo.join("config.ru").to_str().unwrap(),
    ])
}

#[test]
fn puma_behind_thrust_passes_health_checks_and_stops_cleanly() {
    let mut t = Thrust::start(puma());
    t.wait_ready();

    // Puma itself redirects /up (force_ssl) and refuses unknown hosts...
    let direct = request(t.worker_port, "GET", "/up", &[("Host", "localhost")], b"").unwrap();
    assert_eq!(direct.status, 301);
    assert_eq!(direct.header("location"), Some("https://localhost/up"));
    let direct = request(t.worker_port, "GET", "/up", &[("Host", "10.0.0.7")], b"").unwrap();
    assert_eq!(direct.status, 403);
    // ...but through thrust the health check passes, for any Host.
    for host in ["localhost", "10.0.0.7", "app.example.com"] {
        let r = request(t.port, "GET", "/up", &[("Host", host)], b"").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "OK"), "{host}");
    }

    // Other paths reach Puma, with the forwarding headers Rails reads.
    let r = request(
        t.port,
        "GET",
        "/headers?via=thrust",
        &[("Host", "localhost")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["host"], "localhost");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "localhost");
    assert!(seen["x-request-start"].as_str().unwrap().starts_with("t="));
    assert_eq!(seen["x-request-id"].as_str().unwrap().len(), 36);
    // Host authorization still applies to the app's own paths.
    assert_eq!(
        request(t.port, "GET", "/headers", &[("Host", "evil.example")], b"")
            .unwrap()
            .status,
        403
    );

    // Rack::Sendfile + Rack::Files: Puma sends the header, thrust the bytes.
    let direct = request(
        t.worker_port,
        "GET",
        "/files/assets/app.js",
        &[("Host", "localhost")],
        b"",
    )
    .unwrap();
    let on_disk = demo().join("public/assets/app.js");
    assert_eq!(direct.header("x-sendfile"), Some(on_disk.to_str().unwrap()));
    assert!(direct.body.is_empty());
    let r = request(
        t.port,
        "GET",
        "/files/assets/app.js",
        &[("Host", "localhost")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&on_disk).unwrap());
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    assert_eq!(r.header("x-sendfile"), None);

    // Puma's event stream arrives event by event.
    let arrivals = event_arrivals(t.port, "localhost", "/events");
    assert_eq!(arrivals.len(), 5);
    assert!(arrivals[4] - arrivals[0] >= Duration::from_millis(1500));

    // SIGTERM reaches Puma, which stops gracefully; thrust exits with its 0.
    t.signal(Signal::SIGTERM);
    let status = t.wait_exit(Duration::from_secs(20)).and_then(|s| s.code());
    assert_eq!(status, Some(0), "{}", t.log_text());
    let log = t.log_text();
    assert!(log.contains("Gracefully stopping"), "{log}");
    assert!(t
        .log_lines()
        .iter()
        .any(|l| l["msg"] == "Child exited" && l["status"] == "exit code 0"));
}

/// Waits (bounded) until thrust has stored `times` responses for `target`.
fn wait_stored(t: &Thrust, target: &str, times: usize) -> bool {
    wait_until(Duration::from_secs(10), || {
        t.log_lines()
            .iter()
            .filter(|l| {
                l["msg"] == "Stored response with its compressed variants" && l["target"] == target
            })
            .count()
            >= times
    })
}

#[test]
fn rails_assets_arrive_precompressed_and_are_served_from_the_cache() {
    let t = Thrust::start(puma().env("DEBUG", "1"));
    t.wait_ready();
    let host = ("Host", "localhost");
    let css = "/assets/application-8e3d1dde.css";
    let on_disk = demo().join("public").join(&css[1..]);
    let file = |suffix: &str| std::fs::read(format!("{}{suffix}", on_disk.display())).unwrap();

    // ActionDispatch::Static picks the precompressed copy; Rack::Sendfile
    // names it with an empty body.
    let direct = request(
        t.worker_port,
        "GET",
        css,
        &[host, ("Accept-Encoding", "gzip")],
        b"",
    )
    .unwrap();
    assert_eq!(
        direct.header("x-sendfile"),
        Some(format!("{}.gz", on_disk.display()).as_str())
    );
    assert_eq!(direct.header("content-encoding"), Some("gzip"));
    assert!(direct.body.is_empty());

    // Through thrust: the right bytes with the app's encoding, from the app
    // once, then from memory.
    let cases = [
        ("gzip", ".gz", Some("gzip")),
        ("br, gzip", ".br", Some("br")),
        ("", "", None),
    ];
    for (n, (accept, suffix, encoding)) in cases.into_iter().enumerate() {
        let headers = [host, ("Accept-Encoding", accept)];
        let headers = if accept.is_empty() {
            &headers[..1]
        } else {
            &headers[..]
        };
        let expected = file(suffix);
        for outcome in ["miss", "hit"] {
            let r = request(t.port, "GET", css, headers, b"").unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-cache"), Some(outcome), "{accept:?}");
            assert_eq!(
                r.header("content-encoding"),
                encoding,
                "{accept:?} {outcome}"
            );
            assert_eq!(r.body, expected, "{accept:?} {outcome}: the bytes on disk");
            assert_eq!(
                r.header("content-length"),
                Some(expected.len().to_string().as_str())
            );
            assert_eq!(r.header("content-type"), Some("text/css"));
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            assert_eq!(r.header("x-sendfile"), None);
            if outcome == "miss" {
                assert!(wait_stored(&t, css, n + 1), "{accept:?} never stored");
            }
        }
    }
    // A browser gets the stylesheet.
    let (head, decoded) = curl(
        t.port,
        css,
        &["Host: localhost", "Accept-Encoding: br, gzip"],
    );
    assert!(head.contains("x-cache: hit"), "{head}");
    assert_eq!(decoded, file(""));

    // An asset without precompressed copies is cached too.
    let js = "/assets/app.js";
    for outcome in ["miss", "hit"] {
        let r = request(t.port, "GET", js, &[host], b"").unwrap();
        assert_eq!((r.status, r.header("x-cache")), (200, Some(outcome)));
        assert_eq!(
            r.body,
            std::fs::read(demo().join("public/assets/app.js")).unwrap()
        );
        assert_eq!(r.header("content-type"), Some("application/javascript"));
        if outcome == "miss" {
            assert!(wait_stored(&t, js, 1));
        }
    }
    // Conditional and range requests on the stored asset stay in thrust.
    let r = request(t.port, "GET", js, &[host, ("Range", "bytes=0-1")], b"").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (206, &b"//"[..]));
    let modified = r.header("last-modified").unwrap().to_string();
    let r = request(
        t.port,
        "GET",
        js,
        &[host, ("If-Modified-Since", &modified)],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.header("x-cache")), (304, Some("hit")));

    // The app saw each asset once per encoding asked for (and the css once
    // more, asked directly above), and nothing more.
    let stats = request(t.port, "GET", "/stats", &[host], b"")
        .unwrap()
        .json();
    assert_eq!(stats[css], 4, "{stats}");
    assert_eq!(stats[js], 1, "{stats}");
}
