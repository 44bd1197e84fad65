//! Compression dictionaries (RFC 9842, THRUST_COMPRESSION_DICTIONARIES):
//! a returning visitor holding version 1 of a fingerprinted script gets
//! version 2 as a `dcz` delta, decoded here by Python's zstandard with
//! version 1 as a raw-content dictionary, and by Debian's headless Chromium
//! (http://localhost is a secure context), which then runs it. Both from
//! THRUST_PUBLIC_DIR and on the Rails path: Debian's Puma with
//! ActionDispatch::Static behind Rack::Sendfile naming `.br`/`.gz`
//! siblings (tests/apps/public_site.ru).

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::*;

/// (head, lower-cased, and raw body) of GET `target` with `headers`.
fn fetch(port: u16, target: &str, headers: &[&str]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let url = format!("http://127.0.0.1:{port}{target}");
    let mut args = vec!["-s", "-D", head.to_str().unwrap(), "--max-time", "10"];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&url);
    let out = run_tool("curl", &args);
    let head = std::fs::read_to_string(&head).unwrap().to_ascii_lowercase();
    (head, out.stdout)
}

/// A script of about 300 KB; `version` changes about 1% of its lines.
fn script(version: u32) -> Vec<u8> {
    (0..6_000u32)
        .map(|i| {
            let changed = if i % 100 == 7 { version } else { 1 };
            format!("export function f{i}(x) {{ return x * {i} + {changed}; }}\n")
        })
        .collect::<String>()
        .into_bytes()
}

fn sha256(bytes: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let out = run_tool("sha256sum", &[file.path().to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `delta` (a dcz body) decoded by Python's zstandard against `dictionary`.
fn python_decode(dir: &Path, dictionary: &[u8], delta: &[u8]) -> Vec<u8> {
    let (dict_file, delta_file) = (dir.join("dict"), dir.join("delta"));
    std::fs::write(&dict_file, dictionary).unwrap();
    std::fs::write(&delta_file, delta).unwrap();
    let script = "import sys, zstandard\n\
        d = zstandard.ZstdCompressionDict(open(sys.argv[1], 'rb').read(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)\n\
        body = open(sys.argv[2], 'rb').read()\n\
        out = zstandard.ZstdDecompressor(dict_data=d).decompressobj().decompress(body[40:])\n\
        sys.stdout.buffer.write(out)\n";
    let out = run_tool(
        "/usr/bin/python3",
        &[
            "-c",
            script,
            dict_file.to_str().unwrap(),
            delta_file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_returning_visitor_gets_the_new_version_as_a_delta_from_the_old() {
    let site = tempfile::tempdir().unwrap();
    let assets = site.path().join("public/assets");
    std::fs::create_dir_all(&assets).unwrap();
    let (v1, v2) = (script(1), script(2));
    std::fs::write(assets.join("app-1111111a.js"), &v1).unwrap();
    std::fs::write(assets.join("plain.js"), &v1).unwrap();
    let t = Thrust::start_ready(
        Options::app()
            .env(
                "THRUST_PUBLIC_DIR",
                site.path().join("public").to_string_lossy(),
            )
            .env("THRUST_COMPRESSION_DICTIONARIES", "1"),
    );

    // Version 1 is offered as the dictionary for the script's later versions.
    let (head, _) = fetch(t.port, "/assets/app-1111111a.js", &["Accept-Encoding: br"]);
    assert!(
        head.contains("use-as-dictionary: match=\"/assets/app-*.js\", match-dest=(\"script\")"),
        "{head}"
    );
    assert!(head.contains("available-dictionary"), "{head}");
    // A file without a fingerprint is not.
    let (head, _) = fetch(t.port, "/assets/plain.js", &["Accept-Encoding: br"]);
    assert!(!head.contains("use-as-dictionary"), "{head}");

    // The deploy: version 2 under its new name, version 1 left beside it.
    std::fs::write(assets.join("app-2222222b.js"), &v2).unwrap();
    let held = base64::engine::general_purpose::STANDARD.encode(hex_bytes(&sha256(&v1)));
    let available = format!("Available-Dictionary: :{held}:");
    let asked = ["Accept-Encoding: dcz, br", available.as_str()];
    // The very first request for version 2 (the returning visitor's, right
    // after the deploy) already gets the delta.
    let (head, delta) = fetch(t.port, "/assets/app-2222222b.js", &asked);
    assert!(head.contains("content-encoding: dcz"), "{head}");
    assert_eq!(&delta[8..40], &hex_bytes(&sha256(&v1))[..]);
    let decoded = python_decode(site.path(), &v1, &delta);
    assert_eq!(
        sha256(&decoded),
        sha256(&v2),
        "decodes to version 2 exactly"
    );
    assert!(
        delta.len() * 10 < v2.len() / 10,
        "{} bytes for {}",
        delta.len(),
        v2.len()
    );
    assert!(
        head.contains("use-as-dictionary: match=\"/assets/app-*.js\""),
        "{head}"
    );
    // The log says which encoding and dictionary the answer used.
    let logged = t.wait_log(Duration::from_secs(5), |line| {
        line["path"] == "/assets/app-2222222b.js" && line["resp_content_encoding"] == "dcz"
    });
    let logged = logged.expect("a log line for the delta");
    assert_eq!(logged["dictionary"], format!(":{held}:"));

    // A hash thrust does not know: brotli, as without dictionaries.
    let unknown = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let unknown = format!("Available-Dictionary: :{unknown}:");
    let (head, _) = fetch(
        t.port,
        "/assets/app-2222222b.js",
        &["Accept-Encoding: dcz, br", &unknown],
    );
    assert!(head.contains("content-encoding: br"), "{head}");
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A classic script (the functions without `export`) that writes which
/// version ran into the page.
fn script_that_shows(version: u32) -> Vec<u8> {
    let mut body = String::from_utf8(script(version))
        .unwrap()
        .replace("export ", "")
        .into_bytes();
    body.extend(
        format!("document.getElementById('out').textContent = 'version {version} ran';\n").bytes(),
    );
    body
}

/// The page's text after headless Chromium (with `profile`, kept between
/// runs as a browser keeps its cache) has loaded it and run its scripts.
fn chromium_dom(port: u16, profile: &Path) -> String {
    chromium_dom_at(&format!("http://localhost:{port}/index.html"), profile)
}

/// The text of the page at `url` once headless Chromium has run it.
fn chromium_dom_at(url: &str, profile: &Path) -> String {
    let profile = format!("--user-data-dir={}", profile.display());
    let out = run_tool(
        "timeout",
        &[
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            &profile,
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium: {dom} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[test]
fn a_real_browser_runs_the_new_version_it_got_as_a_delta() {
    let site = tempfile::tempdir().unwrap();
    let public = site.path().join("public");
    std::fs::create_dir_all(public.join("assets")).unwrap();
    let page = |name: &str| {
        let html = format!(
            "<!doctype html><html><body><p id=\"out\">no script</p>\
             <script src=\"/assets/{name}\"></script></body></html>"
        );
        std::fs::write(public.join("index.html"), html).unwrap();
    };
    std::fs::write(public.join("assets/app-1111111a.js"), script_that_shows(1)).unwrap();
    page("app-1111111a.js");
    let t = Thrust::start(
        Options::app()
            .env("THRUST_PUBLIC_DIR", public.to_string_lossy())
            .env("THRUST_COMPRESSION_DICTIONARIES", "1"),
    );
    t.wait_listening();
    let profile = site.path().join("profile");
    let dom = chromium_dom(t.port, &profile);
    assert!(dom.contains("version 1 ran"), "{dom}\n{}", t.log_text());

    // The deploy: a new fingerprint, the old file kept beside it.
    std::fs::write(public.join("assets/app-2222222b.js"), script_that_shows(2)).unwrap();
    page("app-2222222b.js");
    // Written within the same second as the first page, it would carry the
    // same Last-Modified, and Chromium's revalidation would get a 304.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let index = public.join("index.html");
    run_tool(
        "touch",
        &["-d", &format!("@{later}"), index.to_str().unwrap()],
    );
    let dom = chromium_dom(t.port, &profile);
    assert!(dom.contains("version 2 ran"), "{dom}");
    let sent = |path: &str| {
        t.wait_log(Duration::from_secs(5), |l| {
            l["msg"] == "Request" && l["path"] == path
        })
        .unwrap_or_else(|| panic!("no log line for {path}"))
    };
    let first = sent("/assets/app-1111111a.js");
    let second = sent("/assets/app-2222222b.js");
    assert_eq!(second["resp_content_encoding"], "dcz", "{second}");
    let (whole, delta) = (
        first["resp_content_length"].as_u64().unwrap(),
        second["resp_content_length"].as_u64().unwrap(),
    );
    assert!(
        delta * 10 < whole,
        "{delta} bytes as dcz, {whole} for version 1"
    );
}

/// `name` under `dir` with its `.br` and `.gz` siblings, as Rails' asset
/// precompilation leaves them.
fn write_precompressed(dir: &Path, name: &str, body: &[u8]) {
    use std::io::Write;
    std::fs::write(dir.join(name), body).unwrap();
    let mut br = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut br, 4096, 9, 22);
        writer.write_all(body).unwrap();
    }
    std::fs::write(dir.join(format!("{name}.br")), br).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    std::fs::write(dir.join(format!("{name}.gz")), gz.finish().unwrap()).unwrap();
}

/// Puma with ActionDispatch::Static over `public`, behind thrust with
/// dictionaries on (no THRUST_PUBLIC_DIR: Rails names every file).
fn rails(public: &Path) -> Thrust {
    Thrust::start_ready(
        Options::puma("tests/apps/public_site.ru")
            .env("PUBLIC_ROOT", public.to_string_lossy())
            .env("THRUST_COMPRESSION_DICTIONARIES", "1"),
    )
}

fn brotli_decode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &body[..], &mut out).unwrap();
    out
}

#[test]
fn on_the_rails_path_a_delta_decodes_to_the_new_version_whether_version_1_came_as_br_or_identity() {
    let (v1, v2) = (script(1), script(2));
    // "unserved": version 1 only lies beside version 2 (a new container
    // after a deploy, with the old assets bridged): learned from the disk.
    for first in ["br", "identity", "unserved"] {
        let site = tempfile::tempdir().unwrap();
        let public = site.path().join("public");
        let assets = public.join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        write_precompressed(&assets, "lib-1111111a.js", &v1);
        let t = rails(&public);
        if first != "unserved" {
            let accept = format!("Accept-Encoding: {first}");
            let (head, body) = fetch(t.port, "/assets/lib-1111111a.js", &[&accept]);
            assert!(
                head.contains("use-as-dictionary: match=\"/assets/lib-*.js\""),
                "{head}"
            );
            let v1_got = if first == "br" {
                assert!(head.contains("content-encoding: br"), "{head}");
                brotli_decode(&body)
            } else {
                body
            };
            assert_eq!(v1_got, v1, "version 1 as {first}");
        }

        // The deploy: version 2 and its siblings beside version 1's.
        write_precompressed(&assets, "lib-2222222b.js", &v2);
        let held = base64::engine::general_purpose::STANDARD.encode(hex_bytes(&sha256(&v1)));
        let available = format!("Available-Dictionary: :{held}:");
        let asked = ["Accept-Encoding: dcz, br, gzip", available.as_str()];
        // The first request for version 2 (a miss: Rails names the .br
        // file), then the same from the stored entry (a hit).
        for round in ["miss", "hit"] {
            let (head, delta) = fetch(t.port, "/assets/lib-2222222b.js", &asked);
            assert!(
                head.contains("content-encoding: dcz"),
                "{first}, {round}: {head}"
            );
            assert!(
                head.contains(&format!("x-cache: {round}")),
                "{first}, {round}: {head}"
            );
            let decoded = python_decode(site.path(), &v1, &delta);
            assert!(
                decoded == v2,
                "{first}, {round}: the delta decodes to version 2's bytes"
            );
            assert!(
                delta.len() < v2.len() / 50,
                "{first}, {round}: {} bytes",
                delta.len()
            );
        }
        // A visitor without a dictionary still gets Rails' brotli file.
        let (head, body) = fetch(t.port, "/assets/lib-2222222b.js", &["Accept-Encoding: br"]);
        assert!(head.contains("content-encoding: br"), "{head}");
        assert!(brotli_decode(&body) == v2);
    }
}

#[test]
fn a_real_browser_runs_the_new_version_on_the_rails_path() {
    let site = tempfile::tempdir().unwrap();
    let public = site.path().join("public");
    let assets = public.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    write_precompressed(&assets, "lib-1111111a.js", &script_that_shows(1));
    let t = rails(&public);
    let profile = site.path().join("profile");
    let page = |name: &str| format!("http://localhost:{}/run?src={name}", t.port);
    let dom = chromium_dom_at(&page("lib-1111111a.js"), &profile);
    assert!(dom.contains("version 1 ran"), "{dom}\n{}", t.log_text());
    write_precompressed(&assets, "lib-2222222b.js", &script_that_shows(2));
    let dom = chromium_dom_at(&page("lib-2222222b.js"), &profile);
    assert!(dom.contains("version 2 ran"), "{dom}\n{}", t.log_text());
    let second = t
        .wait_log(Duration::from_secs(5), |l| {
            l["msg"] == "Request" && l["path"] == "/assets/lib-2222222b.js"
        })
        .expect("a log line for version 2");
    assert_eq!(second["resp_content_encoding"], "dcz", "{second}");
}

#[test]
fn made_up_hosts_and_queries_do_not_grow_dictionary_memory_past_its_bound() {
    let site = tempfile::tempdir().unwrap();
    let public = site.path().join("public");
    let assets = public.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    write_precompressed(&assets, "lib-1111111a.js", &script(1));
    write_precompressed(&assets, "lib-2222222b.js", &script(2));
    let metrics = free_port();
    let t = Thrust::start_ready(
        Options::puma("tests/apps/public_site.ru")
            .env("PUBLIC_ROOT", public.to_string_lossy())
            .env("THRUST_COMPRESSION_DICTIONARIES", "1")
            .env("CACHE_SIZE", (8 << 20).to_string())
            .env("THRUST_METRICS_PORT", metrics.to_string()),
    );
    let (rss_before, _) = t.memory_kib();
    // Each request a new URL to thrust (a made-up 4 KiB Host, a new query),
    // each answer stored and learned: the scopes and keys an attacker
    // chooses must not pile up.
    let filler = "h".repeat(4096);
    for i in 0..400 {
        let target = format!("/assets/lib-{}.js?n={i}", ["1111111a", "2222222b"][i % 2]);
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: {filler}{i}.example\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(raw(t.port, head.as_bytes()).unwrap().status, 200);
    }
    let held = |name: &str| {
        let scraped = scrape(metrics);
        scraped.get(&format!("{name}{{}}")).copied().unwrap_or(0.0)
    };
    // Let the last stores finish.
    std::thread::sleep(Duration::from_millis(500));
    let dictionary = held("thrust_dictionary_bytes");
    let cache = held("thrust_cache_bytes");
    assert!(dictionary > 0.0, "something was learned");
    assert!(
        dictionary <= (2 << 20) as f64,
        "dictionaries hold {dictionary} bytes"
    );
    assert!(cache <= (8 << 20) as f64, "the cache holds {cache} bytes");
    let (rss_after, _) = t.memory_kib();
    let grown = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
    assert!(grown < 40.0, "RSS grew {grown:.1} MiB");
}
