//! The response cache (SPEC §7).

mod common;

use std::time::Duration;

use common::*;

const PUBLIC: &str = "h_Cache_Control=public,max-age=60";

fn get_with(port: u16, target: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", target, headers, b"").unwrap()
}

/// thrust in front of the test app, logging at debug level so a test can see
/// when a response has been stored (storing finishes after the response).
fn start_debug() -> Thrust {
    Thrust::start_ready(Options::app().env("DEBUG", "1"))
}

/// Waits (bounded) until thrust has stored the response for `target`;
/// false when it never does.
fn wait_stored(t: &Thrust, target: &str, limit: Duration) -> bool {
    t.wait_log(limit, |l| {
        l["msg"] == "Stored response with its compressed variants" && l["target"] == target
    })
    .is_some()
}

#[test]
fn a_public_response_is_served_from_memory_after_the_first_request() {
    let t = start_debug();
    let target = format!("/text?bytes=3000&{PUBLIC}&h_Set_Cookie=session%3D1&h_ETag=%22e1%22");
    let first = get_with(t.port, &target, &[]);
    assert_eq!(first.header("x-cache"), Some("miss"));
    assert_eq!(first.header("set-cookie"), Some("session=1"));
    assert!(wait_stored(&t, &target, Duration::from_secs(5)));
    let hit = get_with(t.port, &target, &[]);
    assert_eq!(hit.header("x-cache"), Some("hit"));
    assert_eq!(hit.body, first.body);
    assert!(hit.header("age").is_some());
    assert_eq!(hit.header("set-cookie"), None, "Set-Cookie is never stored");
    assert_eq!(t.app_requests("/text").len(), 1);

    // HEAD is answered from the GET entry; If-None-Match gets a 304.
    let head = request(t.port, "HEAD", &target, &[], b"").unwrap();
    assert_eq!(
        (head.header("x-cache"), head.header("content-length")),
        (Some("hit"), Some("3000"))
    );
    let not_modified = get_with(t.port, &target, &[("If-None-Match", "\"e1\"")]);
    assert_eq!(
        (not_modified.status, not_modified.header("x-cache")),
        (304, Some("hit"))
    );
    // A Range is served from the stored body.
    let part = get_with(t.port, &target, &[("Range", "bytes=100-199")]);
    assert_eq!((part.status, part.header("x-cache")), (206, Some("hit")));
    assert_eq!(part.body, &first.body[100..200]);
    assert_eq!(t.app_requests("/text").len(), 1);
}

#[test]
fn only_storable_responses_are_stored() {
    let t = start_debug();
    // A storable response shows up in the log (given up to 10 s: the 100,000-URL
    // test may be loading both CPUs); the others are given 1.5 s to show up.
    let stored = |query: &str, storable: bool| {
        let target = format!("/text?bytes=2000&{query}");
        get_with(t.port, &target, &[]);
        let patience = Duration::from_millis(if storable { 10_000 } else { 1500 });
        wait_stored(&t, &target, patience);
        get_with(t.port, &target, &[])
            .header("x-cache")
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(stored("h_Cache_Control=public,s-maxage=60", true), "hit");
    assert_eq!(
        stored("h_Cache_Control=public,max-age=0,s-maxage=60", true),
        "hit"
    );
    assert_eq!(
        stored("h_Cache_Control=public,max-age=60,s-maxage=0", false),
        "miss"
    );
    assert_eq!(stored("h_Cache_Control=max-age=60", false), "miss");
    assert_eq!(stored("h_Cache_Control=public", false), "miss");
    assert_eq!(
        stored("h_Cache_Control=public,private,max-age=60", false),
        "miss"
    );
    assert_eq!(
        stored("h_Cache_Control=public,no-store,max-age=60", false),
        "miss"
    );
    assert_eq!(
        stored("h_Cache_Control=public,no-cache,max-age=60", false),
        "miss"
    );
    assert_eq!(stored("h_Cache_Control=public,s-max-age=60", false), "miss");
    assert_eq!(stored(&format!("{PUBLIC}&h_Vary=*"), false), "miss");
    assert_eq!(stored(&format!("{PUBLIC}&status=404"), false), "miss");
    assert_eq!(stored(&format!("{PUBLIC}&status=301"), true), "hit");

    let post = request(t.port, "POST", &format!("/text?{PUBLIC}"), &[], b"x").unwrap();
    assert_eq!(post.header("x-cache"), Some("bypass"));
    let range = get_with(
        t.port,
        &format!("/text?{PUBLIC}&fresh"),
        &[("Range", "bytes=0-1")],
    );
    assert_eq!(range.header("x-cache"), Some("bypass"));
}

#[test]
fn keys_cover_query_host_and_varied_headers() {
    let t = start_debug();
    let target = format!("/text?{PUBLIC}&h_Vary=Accept-Language");
    let cache_state = |target: &str, headers: &[(&str, &str)]| {
        get_with(t.port, target, headers)
            .header("x-cache")
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(cache_state(&target, &[("Accept-Language", "fr")]), "miss");
    assert!(wait_stored(&t, &target, Duration::from_secs(5)));
    assert_eq!(cache_state(&target, &[("Accept-Language", "fr")]), "hit");
    assert_eq!(cache_state(&target, &[("Accept-Language", "en")]), "miss");
    assert_eq!(
        cache_state(
            &target,
            &[("Accept-Language", "fr"), ("Host", "other.example")]
        ),
        "miss"
    );
    assert_eq!(
        cache_state(&format!("{target}&other"), &[("Accept-Language", "fr")]),
        "miss"
    );
}

#[test]
fn entries_expire_and_big_bodies_are_not_kept() {
    let t = Thrust::start_ready(
        Options::app()
            .env("MAX_CACHE_ITEM_SIZE", "1500")
            .env("DEBUG", "1"),
    );
    let state = |target: &str| {
        get_with(t.port, target, &[])
            .header("x-cache")
            .unwrap_or_default()
            .to_string()
    };
    let short = "/text?bytes=1000&h_Cache_Control=public,max-age=1";
    state(short);
    assert!(wait_stored(&t, short, Duration::from_secs(5)));
    assert_eq!(state(short), "hit");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(state(short), "miss", "expired after max-age");

    for target in [
        format!("/text?bytes=2000&{PUBLIC}"),
        format!("/text?bytes=2000&chunked=1&{PUBLIC}"),
    ] {
        let first = get_with(t.port, &target, &[]);
        assert_eq!(first.body.len(), 2000, "the first client still gets it all");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(state(&target), "miss", "{target}: over MAX_CACHE_ITEM_SIZE");
    }
    let small_chunked = format!("/text?bytes=1400&chunked=1&{PUBLIC}");
    state(&small_chunked);
    assert!(wait_stored(&t, &small_chunked, Duration::from_secs(5)));
    assert_eq!(state(&small_chunked), "hit");
}

#[test]
fn compressed_hits_do_no_compression_work() {
    let t = Thrust::start_ready(Options::app().env("DEBUG", "1"));
    let target = format!("/text?bytes=50000&type=text/javascript&{PUBLIC}");
    let miss = get_with(t.port, &target, &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        (miss.header("x-cache"), miss.header("content-encoding")),
        (Some("miss"), Some("gzip"))
    );
    let stored = t
        .wait_log(Duration::from_secs(5), |l| {
            l["msg"] == "Stored response with its compressed variants"
        })
        .expect("entry stored");
    assert_eq!(stored["variants"], 3);

    let mut gzip_bodies = Vec::new();
    for encoding in ["gzip", "br", "zstd", "gzip"] {
        for _ in 0..5 {
            let r = get_with(t.port, &target, &[("Accept-Encoding", encoding)]);
            assert_eq!(
                (r.header("x-cache"), r.header("content-encoding")),
                (Some("hit"), Some(encoding))
            );
            assert_eq!(
                r.header("content-length"),
                Some(r.body.len().to_string().as_str())
            );
            if encoding == "gzip" {
                gzip_bodies.push(r.body);
            }
        }
    }
    assert!(
        gzip_bodies.windows(2).all(|w| w[0] == w[1]),
        "cached variants are byte-identical across hits"
    );
    let identity = get_with(t.port, &target, &[]);
    assert_eq!(
        (
            identity.header("x-cache"),
            identity.header("content-encoding"),
            identity.body.len()
        ),
        (Some("hit"), None, 50000)
    );
    let compressions = t
        .log_lines()
        .iter()
        .filter(|l| l["msg"] == "Compressing response")
        .count();
    assert_eq!(compressions, 1, "only the miss was compressed on the fly");
    assert_eq!(t.app_requests("/text").len(), 1);

    // Every stored variant decodes to the original (curl's own decoders).
    for encoding in ["gzip", "br", "zstd"] {
        let (_, decoded) = curl(t.port, &target, &[&format!("Accept-Encoding: {encoding}")]);
        assert_eq!(decoded, identity.body, "{encoding}");
    }
}

#[test]
fn a_hundred_thousand_distinct_urls_keep_memory_bounded() {
    let cache_size: u64 = 8 << 20;
    let t = Thrust::start_ready(
        Options::app()
            .env("CACHE_SIZE", cache_size.to_string())
            .env("LOG_REQUESTS", "0"),
    );
    let uris = t.dir.path().join("uris");
    let lines: String = (0..100_000)
        .map(|i| {
            format!(
                "http://127.0.0.1:{}/text?bytes=2000&{PUBLIC}&n={i}\n",
                t.port
            )
        })
        .collect();
    std::fs::write(&uris, lines).unwrap();
    let (rss_before, _) = t.memory_kib();
    let out = run_tool(
        "h2load",
        &[
            "--h1",
            "-n",
            "100000",
            "-c",
            "8",
            "-i",
            uris.to_str().unwrap(),
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("100000 succeeded"), "{report}");
    let (rss_after, _) = t.memory_kib();
    eprintln!(
        "RSS before {rss_before} KiB, after 100,000 URLs {rss_after} KiB, CACHE_SIZE {} KiB",
        cache_size / 1024
    );
    // The cache holds at most CACHE_SIZE; the allowance covers allocator
    // slack and moka's bookkeeping.
    let allowance_kib = 16 * 1024;
    assert!(
        rss_after <= rss_before + cache_size / 1024 + allowance_kib,
        "RSS {rss_after} KiB after 100,000 URLs (before: {rss_before} KiB, cache {} KiB)",
        cache_size / 1024
    );
}
