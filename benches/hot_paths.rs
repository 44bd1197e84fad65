//! Micro-benchmarks of the work thrust does on every request: cache lookups
//! and inserts, Cache-Control / Vary / Accept-Encoding parsing, the header
//! rewriting before a request goes to the app, compressing a cached
//! variant, and making a compression-dictionary delta. `cargo bench` runs
//! them (criterion).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use thrust::hot_paths::{
    compress_all, dcz, negotiate, set_forwarded, sha256, strip_hop_by_hop, vary_names, BaseKey,
    CacheControl, ClientFacts, Encoding, Entry, ResponseCache,
};

/// What a browser sends for a page.
fn browser_request() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "shop.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("cookie", "_session_id=4f1c2a9be0d34c6f8a7d; theme=dark"),
        ("connection", "keep-alive"),
        ("sec-fetch-mode", "navigate"),
        ("upgrade-insecure-requests", "1"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn asset() -> Bytes {
    (0..2000)
        .flat_map(|i| {
            format!("export function f{i}(a, b) {{ return a * {i} + b; }} // helper {i}\n")
                .into_bytes()
        })
        .take(100 * 1024)
        .collect::<Vec<u8>>()
        .into()
}

fn base(i: usize) -> BaseKey {
    BaseKey {
        target: format!("/assets/application-{i:08x}.js"),
        host: "shop.example.com".to_string(),
        origin: "0shop.example.com\n1https\n".to_string(),
        public: false,
    }
}

fn store(cache: &ResponseCache, i: usize, body: &Bytes, request: &HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/javascript"));
    headers.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    let vary = vec![HeaderName::from_static("accept-encoding")];
    let entry = Entry::new(
        StatusCode::OK,
        headers,
        body.clone(),
        Duration::from_secs(3600),
    );
    cache.insert(base(i), vary, request, entry);
}

fn cache(c: &mut Criterion) {
    let body = asset();
    let request = browser_request();
    let cache = ResponseCache::new(64 * 1024 * 1024);
    for i in 0..500 {
        store(&cache, i, &body, &request);
    }
    c.bench_function(
        "cache lookup, hit (500 entries, Vary: Accept-Encoding)",
        |b| {
            b.iter(|| {
                let key = black_box(base(250));
                cache.get(&key, cache.hash(&key), black_box(&request))
            })
        },
    );
    c.bench_function("cache lookup, miss", |b| {
        b.iter(|| {
            let key = black_box(base(100_000));
            cache.get(&key, cache.hash(&key), black_box(&request))
        })
    });
    let mut next = 1000;
    c.bench_function("cache insert (100 KiB body, shared)", |b| {
        b.iter(|| {
            next += 1;
            store(&cache, next, &body, &request)
        })
    });
}

fn parsing(c: &mut Criterion) {
    c.bench_function("Cache-Control parse", |b| {
        b.iter(|| CacheControl::parse([black_box("public, max-age=31536000, immutable")]))
    });
    let mut response = HeaderMap::new();
    response.insert("vary", HeaderValue::from_static("Accept-Encoding, Origin"));
    c.bench_function("Vary parse", |b| {
        b.iter(|| vary_names(black_box(&response)))
    });
    let offered = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];
    c.bench_function("Accept-Encoding negotiate", |b| {
        b.iter(|| negotiate(black_box(Some("gzip, deflate, br, zstd")), &offered))
    });
}

fn header_rewriting(c: &mut Criterion) {
    let request = browser_request();
    let host = request.get("host").cloned();
    c.bench_function("request headers rewritten for the app", |b| {
        b.iter_batched(
            || request.clone(),
            |mut headers| {
                strip_hop_by_hop(&mut headers, false);
                let client = ClientFacts {
                    addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
                    https: true,
                    host: host.as_ref(),
                    trusted: false,
                    start_millis: 1_796_000_000_000,
                };
                set_forwarded(&mut headers, &client);
                headers
            },
            BatchSize::SmallInput,
        )
    });
}

fn compression(c: &mut Criterion) {
    let asset = asset();
    // A page-sized body as well: encoders size their tables by the body,
    // and small bodies are most of what is compressed.
    for (name, body) in [
        ("compress a cached 100 KiB variant", &asset[..]),
        ("compress a cached 10 KB variant", &asset[..10_000]),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.sample_size(20);
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            group.bench_function(encoding.token(), |b| {
                b.iter(|| compress_all(encoding, black_box(body), 16))
            });
        }
        group.finish();
    }
}

/// A 300 KB script-like body; `version` changes 1 line in `every`.
fn script(version: u32, every: u32) -> Vec<u8> {
    (0..6_000u32)
        .map(|i| {
            let changed = if i % every == 7 { version } else { 1 };
            format!("export function f{i}(x) {{ return x * {i} + {changed}; }}\n")
        })
        .collect::<String>()
        .into_bytes()
}

fn dictionary_delta(c: &mut Criterion) {
    let old = script(1, 100);
    let hash = sha256(&old);
    let mut group = c.benchmark_group("dcz delta of a 300 KB script, made once at store");
    group.sample_size(10);
    for (name, every) in [("1% of lines changed", 100), ("10% of lines changed", 10)] {
        let new = script(2, every);
        group.bench_function(name, |b| b.iter(|| dcz(&old, &hash, black_box(&new))));
    }
    group.finish();
}

criterion_group!(
    benches,
    cache,
    parsing,
    header_rewriting,
    compression,
    dictionary_delta
);
criterion_main!(benches);
