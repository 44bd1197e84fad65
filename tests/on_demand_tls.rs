//! On-demand TLS (THRUST_ON_DEMAND_TLS_ASK) against pebble: a name the app
//! allows gets its certificate at its first handshake, one it refuses gets
//! none, the app is asked once per name while its answer is kept, and a
//! flood of names orders no more than the budget (SPEC §9).

mod common;

use common::pebble::{acme_thrust, Pebble};
use common::*;

/// thrust with on-demand TLS and no TLS_DOMAIN, asking the test app, which
/// allows `allowed` (`.suffix` for every name below it).
fn on_demand(
    pebble: &Pebble,
    ports: (u16, u16),
    storage: &std::path::Path,
    allowed: &str,
    extra: &[(&'static str, &str)],
) -> Thrust {
    let mut settings = vec![
        ("TLS_DOMAIN", ""),
        ("THRUST_ON_DEMAND_TLS_ASK", "/thrust/domains"),
        ("ALLOWED_DOMAINS", allowed),
    ];
    settings.extend_from_slice(extra);
    acme_thrust(pebble, storage, ports, &settings)
}

/// The app's answers to thrust's questions about `name`.
fn asked(t: &Thrust, name: &str) -> usize {
    t.app_requests("/thrust/domains")
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!("domain={name}")))
        })
        .count()
}

#[test]
fn an_allowed_name_gets_a_certificate_at_its_first_handshake_and_a_refused_one_none() {
    let (http, https) = (free_port(), free_port());
    let storage = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(http, https, None);
    let t = on_demand(&pebble, (http, https), storage.path(), "shop.test", &[]);
    t.wait_ready();
    let root = pebble.issuing_root();
    // Four first handshakes at once wait for one order; a later one is
    // served at once.
    let first: Vec<Result<String, String>> = std::thread::scope(|scope| {
        (0..4)
            .map(|_| scope.spawn(|| https_get(https, &root, "shop.test", "/")))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    for answer in first {
        assert_eq!(
            answer.as_deref(),
            Ok("hello from app\n"),
            "{}",
            t.log_text()
        );
    }
    assert_eq!(
        https_get(https, &root, "shop.test", "/").as_deref(),
        Ok("hello from app\n")
    );
    assert_eq!(pebble.orders(), 1);
    assert_eq!(
        asked(&t, "shop.test"),
        1,
        "one question while the yes is kept"
    );
    assert!(storage.path().join("shop.test.crt").is_file());
    // Plain HTTP for the allowed name redirects to HTTPS.
    let r = request(http, "GET", "/x", &[("Host", "shop.test")], b"").unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://shop.test/x"))
    );

    // A name the app refuses: no order, a failed handshake, one question.
    for _ in 0..3 {
        assert!(https_get(https, &root, "stranger.test", "/").is_err());
    }
    assert_eq!(pebble.orders(), 1);
    assert_eq!(asked(&t, "stranger.test"), 1, "a no is kept too");
    let r = request(http, "GET", "/", &[("Host", "stranger.test")], b"").unwrap();
    assert_eq!(r.status, 421);

    // Names that are not plain DNS names never reach the app.
    for bad in ["under_score.test", "10.0.0.1"] {
        assert!(https_get(https, &root, bad, "/").is_err());
    }
    assert!(
        t.app_requests("/thrust/domains")
            .iter()
            .all(|e| !e["target"]
                .as_str()
                .unwrap_or_default()
                .contains("under_score")),
        "an invalid name was asked about"
    );

    // After a restart the stored certificate is served without an order.
    drop(t);
    let t = on_demand(&pebble, (http, https), storage.path(), "shop.test", &[]);
    t.wait_ready();
    assert_eq!(
        https_get(https, &root, "shop.test", "/").as_deref(),
        Ok("hello from app\n")
    );
    assert_eq!(pebble.orders(), 1, "{}", t.log_text());
}

#[test]
fn a_flood_of_new_names_orders_no_more_than_the_budget() {
    let (http, https) = (free_port(), free_port());
    let storage = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(http, https, None);
    let t = on_demand(
        &pebble,
        (http, https),
        storage.path(),
        ".flood.test",
        &[("THRUST_ON_DEMAND_TLS_PER_MINUTE", "3")],
    );
    t.wait_ready();
    let root = pebble.issuing_root();
    let (rss_before, _) = t.memory_kib();
    // 60 names the app allows, and 60 it does not, eight at a time.
    let names: Vec<String> = (0..120)
        .map(|i| match i % 2 {
            0 => format!("n{i}.flood.test"),
            _ => format!("n{i}.elsewhere.test"),
        })
        .collect();
    let served: usize = std::thread::scope(|scope| {
        names
            .chunks(15)
            .map(|chunk| {
                let root = &root;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter(|name| https_get(https, root, name, "/").is_ok())
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum()
    });
    assert_eq!(served, 3, "three orders this minute: {}", t.log_text());
    assert_eq!(pebble.orders(), 3);
    assert!(t
        .log_lines()
        .iter()
        .any(|l| l["msg"] == "On-demand TLS: no certificate ordered for an allowed name"));
    let (rss_after, _) = t.memory_kib();
    assert!(
        rss_after < rss_before + 20 * 1024,
        "{rss_before} KiB before, {rss_after} after"
    );
}

#[test]
fn an_ask_url_with_a_query_gets_the_name_added_to_it() {
    let (http, https) = (free_port(), free_port());
    let storage = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(http, https, None);
    // The ask goes to an absolute http:// URL (here the test app itself).
    let app_port = free_port().to_string();
    let ask = format!("http://127.0.0.1:{app_port}/thrust/domains?site=7");
    let t = on_demand(
        &pebble,
        (http, https),
        storage.path(),
        "shop.test",
        &[
            ("TARGET_PORT", &app_port),
            ("THRUST_ON_DEMAND_TLS_ASK", &ask),
        ],
    );
    t.wait_ready();
    let root = pebble.issuing_root();
    assert_eq!(
        https_get(https, &root, "shop.test", "/").as_deref(),
        Ok("hello from app\n"),
        "{}",
        t.log_text()
    );
    let asks = t.app_requests("/thrust/domains");
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0]["target"], "/thrust/domains?site=7&domain=shop.test");
    assert_eq!(asks[0]["headers"]["host"], format!("127.0.0.1:{app_port}"));
}
