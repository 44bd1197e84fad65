//! /metrics on THRUST_METRICS_PORT, read with the Prometheus project's own
//! parser, against the requests the test sent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

type Samples = HashMap<String, f64>;

fn value(samples: &Samples, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

/// How much each sample grew between two scrapes.
fn grown(before: &Samples, after: &Samples, key: &str) -> f64 {
    value(after, key) - value(before, key)
}

fn requests(method: &str, status: &str) -> String {
    format!("thrust_http_requests_total{{method=\"{method}\",status=\"{status}\"}}")
}

#[test]
fn metrics_count_what_clients_were_sent_under_load() {
    let metrics_port = free_port();
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_METRICS_PORT", metrics_port.to_string())
            .env("THRUST_UPSTREAM_TIMEOUT", "1"),
    );
    let asset = t.dir.path().join("app.js");
    std::fs::write(&asset, "console.log('cached');\n".repeat(100)).unwrap();
    let before = scrape(metrics_port);
    assert_eq!(value(&before, "thrust_app_state{state=\"ready\"}"), 1.0);
    assert_eq!(value(&before, "thrust_build_info{version=\"0.1.0\"}"), 1.0);

    // 8 clients at once: compressed pages, uploads, cached assets.
    let port = t.port;
    let asset_target = format!("/asset?path={}", asset.display());
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let asset_target = asset_target.clone();
            std::thread::spawn(move || {
                let mut body_bytes = 0;
                for _ in 0..25 {
                    let r = match client % 4 {
                        0 | 1 => request(
                            port,
                            "GET",
                            "/text?bytes=5000",
                            &[("Accept-Encoding", "gzip")],
                            b"",
                        ),
                        2 => request(port, "POST", "/upload", &[], &[b'u'; 1000]),
                        _ => request(port, "GET", &asset_target, &[], b""),
                    }
                    .unwrap();
                    assert_eq!(r.status, 200);
                    body_bytes += r.body.len() as u64;
                }
                body_bytes
            })
        })
        .collect();
    let body_bytes: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    // Then the failures: 404s, the app hanging up (502), a slow app (504),
    // and files the app names.
    let mut other_bytes = 0;
    for (target, times, status) in [
        ("/text?status=404&bytes=10", 10, 404),
        ("/close", 3, 502),
        ("/slow-head?seconds=2", 1, 504),
        ("/sendfile?path=/etc/hostname", 5, 200),
    ] {
        for _ in 0..times {
            let r = get(t.port, target).unwrap();
            assert_eq!(r.status, status, "{target}");
            other_bytes += r.body.len() as u64;
        }
    }

    // Counted once each response has ended; the last may still be ending.
    let total = 200.0 + 10.0 + 3.0 + 1.0 + 5.0;
    let mut after = scrape(metrics_port);
    wait_until(Duration::from_secs(5), || {
        after = scrape(metrics_port);
        grown(
            &before,
            &after,
            "thrust_http_request_duration_seconds_count{}",
        ) >= total
    });
    let grew = |key: &str| grown(&before, &after, key);
    assert_eq!(grew(&requests("GET", "2xx")), 150.0 + 5.0);
    assert_eq!(grew(&requests("POST", "2xx")), 50.0);
    assert_eq!(grew(&requests("GET", "4xx")), 10.0);
    assert_eq!(grew(&requests("GET", "5xx")), 4.0);
    assert_eq!(grew("thrust_http_request_duration_seconds_count{}"), total);
    // The 504 waited a second for the app: in the buckets above 1 s only.
    assert_eq!(
        grew("thrust_http_request_duration_seconds_bucket{le=\"+Inf\"}")
            - grew("thrust_http_request_duration_seconds_bucket{le=\"0.5\"}"),
        1.0
    );
    assert_eq!(grew("thrust_http_request_body_bytes_total{}"), 50_000.0);
    assert_eq!(
        grew("thrust_http_response_body_bytes_total{}"),
        (body_bytes + other_bytes) as f64
    );
    // Every GET was looked up: the asset is stored once a response for it
    // has been sent whole, so the two clients asking for it at once may
    // miss a few times before their hits.
    let (hits, misses) = (
        grew("thrust_cache_requests_total{outcome=\"hit\"}"),
        grew("thrust_cache_requests_total{outcome=\"miss\"}"),
    );
    assert_eq!(
        hits + misses,
        50.0 + 100.0 + 10.0 + 3.0 + 1.0 + 5.0,
        "{hits} hits"
    );
    assert!(hits >= 40.0, "{hits} hits");
    assert_eq!(
        grew("thrust_cache_requests_total{outcome=\"bypass\"}"),
        50.0
    );
    assert_eq!(value(&after, "thrust_cache_entries{}"), 1.0);
    assert!(value(&after, "thrust_cache_bytes{}") >= 2400.0);
    assert_eq!(
        grew("thrust_compressed_responses_total{encoding=\"gzip\"}"),
        100.0
    );
    assert_eq!(grew("thrust_sendfile_responses_total{}"), 5.0);
    assert_eq!(grew("thrust_bad_gateway_responses_total{}"), 3.0);
    assert_eq!(grew("thrust_upstream_timeouts_total{}"), 1.0);
}

#[test]
fn open_connections_are_counted_by_protocol() {
    let metrics_port = free_port();
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_METRICS_PORT", metrics_port.to_string())
            .env("H2C_ENABLED", "1"),
    );
    let open = |protocol: &str| {
        value(
            &scrape(metrics_port),
            &format!("thrust_open_connections{{protocol=\"{protocol}\"}}"),
        )
    };
    let held: Vec<_> = (0..3).map(|_| connect(t.port)).collect();
    assert!(wait_until(Duration::from_secs(5), || open("http/1.1") == 3.0));
    // An HTTP/2 client with prior knowledge moves its connection to h2c.
    let h2load = std::process::Command::new("h2load")
        .args(["-D", "3", "-c", "1", "-m", "1"])
        .arg(format!("http://127.0.0.1:{}/text?bytes=100", t.port))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen_h2c = wait_until(Duration::from_secs(10), || open("h2c") == 1.0);
    let mut h2load = h2load;
    let _ = h2load.wait();
    assert!(seen_h2c, "h2load's connection was never counted as h2c");
    drop(held);
    assert!(
        wait_until(Duration::from_secs(5), || {
            open("http/1.1") == 0.0 && open("h2c") == 0.0
        }),
        "{:?}",
        scrape(metrics_port)
            .iter()
            .filter(|(k, _)| k.starts_with("thrust_open"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn metrics_are_never_on_the_public_port_and_a_taken_port_stops_start_up() {
    let metrics_port = free_port();
    let t =
        Thrust::start_ready(Options::app().env("THRUST_METRICS_PORT", metrics_port.to_string()));
    // /metrics on the public port is the app's own path.
    let r = get(t.port, "/metrics").unwrap();
    assert_eq!(r.text(), "hello from app\n");
    // Only /metrics is served on the metrics port.
    let r = get(metrics_port, "/").unwrap();
    assert_eq!(r.status, 404);
    assert!(t.log_lines().iter().any(|l| l["msg"] == "Serving /metrics"));

    // A second thrust asking for the same metrics port cannot start.
    let mut second =
        Thrust::start(Options::app().env("THRUST_METRICS_PORT", metrics_port.to_string()));
    let status = second
        .wait_exit(Duration::from_secs(10))
        .and_then(|s| s.code());
    assert_eq!(status, Some(1));
    assert!(second.log_text().contains("THRUST_METRICS_PORT"));
}

#[test]
fn the_heap_figures_show_what_the_cache_keeps() {
    let metrics_port = free_port();
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_METRICS_PORT", metrics_port.to_string())
            .env("CACHE_SIZE", (16 << 20).to_string()),
    );
    let in_use = |samples: &Samples| value(samples, "thrust_heap_bytes{state=\"in_use\"}");
    let before = scrape(metrics_port);
    assert!(in_use(&before) > 0.0);
    assert!(value(&before, "thrust_heap_bytes{state=\"free\"}") >= 0.0);

    // Five cacheable 900 KB answers (not compressed: octet-stream), kept.
    for n in 0..5 {
        let target = format!(
            "/text?bytes=900000&type=application/octet-stream&h_Cache_Control=public,max-age=600&n={n}"
        );
        let r = get(t.port, &target).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 900_000);
    }
    let mut after = scrape(metrics_port);
    assert!(
        wait_until(Duration::from_secs(5), || {
            after = scrape(metrics_port);
            value(&after, "thrust_cache_entries{}") == 5.0
        }),
        "{after:?}"
    );
    assert!(
        in_use(&after) - in_use(&before) >= 4_500_000.0,
        "in use {} → {}",
        in_use(&before),
        in_use(&after)
    );
}
