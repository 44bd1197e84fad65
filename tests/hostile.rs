//! A client playing the attacker against the headers that reach the app
//! (SPEC §5, §7, §11a): cache poisoning through forwarded headers and
//! Connection options, addresses spoofed past an untrusted hop.

mod common;

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use serde_json::Value;

/// The address the tests make a trusted proxy (THRUST_TRUSTED_PROXIES);
/// 127.0.0.1 is then an untrusted client.
const PROXY: &str = "127.0.0.2";
const CLIENT: &str = "127.0.0.1";

/// Sends a raw request from `source` (a loopback address) and reads the answer.
fn send_from(source: &str, port: u16, request: &[u8]) -> Response {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    let local = SockaddrIn::from(SocketAddrV4::new(source.parse().unwrap(), 0));
    bind(fd.as_raw_fd(), &local).unwrap();
    let remote = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    connect(fd.as_raw_fd(), &remote).unwrap();
    let mut stream = TcpStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    read_response(&mut BufReader::new(stream), false).unwrap()
}

/// `GET target` with `extra` header lines, Host shop.test unless `extra` has one.
fn get_with(target: &str, extra: &str) -> Vec<u8> {
    let host = if extra.to_ascii_lowercase().starts_with("host:") {
        ""
    } else {
        "Host: shop.test\r\n"
    };
    format!("GET {target} HTTP/1.1\r\n{host}{extra}Connection: close\r\n\r\n").into_bytes()
}

fn puma_origin_app() -> Options<'static> {
    Options::puma("tests/apps/origin.ru").env("THRUST_TRUSTED_PROXIES", PROXY)
}

/// What the page must say for a client that sent nothing but Host: shop.test.
fn assert_clean(page: &Value, target: &str, context: &str) {
    assert_eq!(
        page["url"],
        format!("http://shop.test{target}"),
        "{context}"
    );
    assert_eq!(page["ssl"], false, "{context}");
    for field in ["forwarded", "prefix", "client_ip", "real_ip"] {
        assert_eq!(page[field], Value::Null, "{field}: {context}");
    }
    // thrust's own X-Request-Start, not a client's `t=1`.
    let start: u64 = page["request_start"]
        .as_str()
        .and_then(|t| t.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(
        start > 1_700_000_000_000,
        "request start {start}: {context}"
    );
}

/// Every header a client can set that Rack, Rails or thrust's key reads,
/// as an attacker would send it. Headers that describe one visit (the
/// address headers Client-Ip and X-Real-Ip, X-Request-Start) are probed
/// from untrusted clients only: from a trusted proxy they describe that
/// visitor, and like X-Forwarded-For they are not part of the key (a page
/// that shows who asks, or when, is not one a shared cache may keep).
const PER_VISIT_POISONS: &[&str] = &[
    "Client-Ip: 6.6.6.6\r\n",
    "X-Real-Ip: 6.6.6.6\r\n",
    "X-Request-Start: t=1\r\n",
];
const POISONS: &[&str] = &[
    "X-Forwarded-Host: evil.example\r\n",
    "X-Forwarded-Proto: https\r\n",
    "X-Forwarded-Port: 1337\r\n",
    "X-Forwarded-Scheme: https\r\n",
    "X-Forwarded-Ssl: on\r\n",
    "X-Forwarded-Prefix: /evil\r\n",
    "Forwarded: host=evil.example;proto=https\r\n",
    "X-Forwarded-Host: shop.test\r\nX-Forwarded-Host: evil.example\r\n",
    "Client-Ip: 6.6.6.6\r\n",
    "X-Real-Ip: 6.6.6.6\r\n",
    "X-Request-Start: t=1\r\n",
    "Connection: Host\r\n",
    "Connection: X-Forwarded-Host\r\nX-Forwarded-Host: evil.example\r\n",
    "Host: shop.test\r\nHost: evil.example\r\n",
    "Host: evil.example\r\nHost: shop.test\r\n",
];

#[test]
fn no_request_header_poisons_a_cached_page_for_other_clients() {
    let t = Thrust::start_ready(puma_origin_app());
    for (peer, trusted) in [(CLIENT, false), (PROXY, true)] {
        for (i, poison) in POISONS.iter().enumerate() {
            if trusted && PER_VISIT_POISONS.contains(poison) {
                continue;
            }
            let target = format!("/probe-{peer}-{i}");
            let context = format!("{poison:?} from {peer}");
            let poisoned = send_from(peer, t.port, &get_with(&target, poison));
            let hosts = poison.split("\r\n").filter(|l| l.starts_with("Host:"));
            if hosts.count() > 1 {
                assert_eq!(poisoned.status, 400, "{context}");
            } else if !trusted {
                // An untrusted client's forwarded headers never reach the app.
                assert_clean(&poisoned.json(), &target, &context);
            }
            for clean_peer in [CLIENT, PROXY, CLIENT] {
                let clean = send_from(clean_peer, t.port, &get_with(&target, ""));
                assert_eq!(clean.status, 200, "{context}");
                assert_clean(&clean.json(), &target, &context);
            }
            // The clean page itself is cached (stored off the I/O threads,
            // so it may take a moment): the probe shows keys, not a cache
            // that stores nothing. Every answer on the way is the clean page.
            let stored = wait_until(Duration::from_secs(5), || {
                let again = send_from(CLIENT, t.port, &get_with(&target, ""));
                assert_clean(&again.json(), &target, &context);
                again.header("x-cache") == Some("hit")
            });
            assert!(stored, "the clean page was never stored: {context}");
        }
    }
}

#[test]
fn an_absolute_form_target_is_keyed_and_forwarded_by_its_host_header() {
    let t = Thrust::start_ready(puma_origin_app());
    let poisoned = send_from(
        CLIENT,
        t.port,
        b"GET http://evil.example/absolute HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    );
    assert_clean(&poisoned.json(), "/absolute", "absolute form");
    let clean = send_from(CLIENT, t.port, &get_with("/absolute", ""));
    assert_clean(&clean.json(), "/absolute", "after absolute form");
}

#[test]
fn trusted_proxies_are_chosen_by_address_and_the_log_follows_their_chain() {
    let t = Thrust::start_ready(Options::app().env("THRUST_TRUSTED_PROXIES", PROXY));
    let chain = "X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Host: shop.example\r\nForwarded: for=203.0.113.9;proto=https\r\n";
    let from_proxy = send_from(PROXY, t.port, &get_with("/echo?via=proxy", chain));
    let seen = &from_proxy.json()["headers"];
    assert_eq!(
        seen["x-forwarded-for"],
        "198.51.100.7, 203.0.113.9, 127.0.0.2"
    );
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "shop.example");
    assert_eq!(seen["forwarded"], "for=203.0.113.9;proto=https");

    let from_client = send_from(CLIENT, t.port, &get_with("/echo?via=client", chain));
    let seen = &from_client.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.test");
    assert_eq!(seen.get("forwarded"), None);

    // The log names the client the trusted proxy reported (the first
    // untrusted hop from the right), and the untrusted client as it is.
    let line = |query: &str| {
        t.wait_log(Duration::from_secs(5), |l| l["query"] == query)
            .unwrap_or_else(|| panic!("no log line for {query}: {}", t.log_text()))
    };
    assert_eq!(line("via=proxy")["remote_addr"], "203.0.113.9");
    let untrusted = line("via=client")["remote_addr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(untrusted.starts_with("127.0.0.1:"), "{untrusted}");
}

#[test]
fn forward_headers_keeps_thrusters_meaning_over_the_address_list() {
    let everyone = Thrust::start_ready(Options::app().env("FORWARD_HEADERS", "true"));
    let r = send_from(
        CLIENT,
        everyone.port,
        &get_with("/echo", "X-Forwarded-Host: outer.example\r\n"),
    );
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "outer.example");
    let nobody = Thrust::start_ready(Options::app().env("FORWARD_HEADERS", "false"));
    let r = send_from(
        CLIENT,
        nobody.port,
        &get_with("/echo", "X-Forwarded-Host: outer.example\r\n"),
    );
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "shop.test");
}

#[test]
fn connection_options_never_strip_host_or_the_request_id() {
    let t = Thrust::start_ready(Options::app());
    let r = send_from(
        CLIENT,
        t.port,
        &get_with(
            "/echo?conn=1",
            "Connection: Host, X-Request-Id, X-Forwarded-For, X-Secret\r\nX-Secret: 1\r\n",
        ),
    );
    let seen = &r.json()["headers"];
    assert_eq!(seen["host"], "shop.test");
    assert_eq!(seen.get("x-secret"), None);
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    let id = seen["x-request-id"].as_str().unwrap().to_string();
    let line = t
        .wait_log(Duration::from_secs(5), |l| l["query"] == "conn=1")
        .unwrap();
    assert_eq!(
        line["request_id"], id,
        "the log and the app name one request"
    );
}

#[test]
fn vary_keys_on_the_headers_the_app_received_not_the_clients() {
    // A client names Accept-Language as a Connection option: the app never
    // sees it, answers its default page, and says it varies on it. That
    // page must not be stored under the client's `fr`.
    let t = Thrust::start_ready(Options::app());
    let target = "/text?bytes=100&h_Vary=Accept-Language&h_Cache_Control=public,max-age=60";
    let poisoned = send_from(
        CLIENT,
        t.port,
        &get_with(
            target,
            "Accept-Language: fr\r\nConnection: Accept-Language\r\n",
        ),
    );
    assert_eq!(poisoned.header("x-cache"), Some("miss"));
    let seen = t.app_requests("/text");
    assert_eq!(seen[0]["headers"].get("accept-language"), None);
    // Stored under what the app saw (no Accept-Language)...
    assert!(wait_until(Duration::from_secs(5), || {
        send_from(CLIENT, t.port, &get_with(target, "")).header("x-cache") == Some("hit")
    }));
    // ...so a French client is not handed it.
    let french = send_from(CLIENT, t.port, &get_with(target, "Accept-Language: fr\r\n"));
    assert_eq!(french.header("x-cache"), Some("miss"));
}
