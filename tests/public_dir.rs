//! THRUST_PUBLIC_DIR in front of Debian's Puma and a Rails-shaped app
//! (tests/apps/public_site.ru): files below the directory are answered by
//! thrust without the app; everything else reaches the app.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const ASSETS: usize = 10;

/// A public/ directory with ten fingerprinted assets (one with a .br
/// sibling), robots.txt, dated reports, dotfiles, and a symlink that leads
/// out of it.
fn public_dir(dir: &Path) {
    let assets = dir.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    for i in 0..ASSETS {
        let body = format!("/* asset {i} */\n{}", "body { color: red; }\n".repeat(200));
        std::fs::write(
            assets.join(format!("app{i}-{:08x}.css", 0x3f2a9c00 + i)),
            body,
        )
        .unwrap();
    }
    let first = std::fs::read(assets.join("app0-3f2a9c00.css")).unwrap();
    let mut compressed = Vec::new();
    {
        use std::io::Write;
        let mut writer = brotli::CompressorWriter::new(&mut compressed, 4096, 9, 22);
        writer.write_all(&first).unwrap();
    }
    std::fs::write(assets.join("app0-3f2a9c00.css.br"), compressed).unwrap();
    std::fs::write(dir.join("robots.txt"), "User-agent: *\n").unwrap();
    std::fs::create_dir_all(dir.join("files")).unwrap();
    std::fs::write(dir.join("report-20240131.pdf"), "%PDF-1.4 report").unwrap();
    std::fs::write(dir.join("files/invoice-12345678.pdf"), "%PDF-1.4 invoice").unwrap();
    std::fs::write(dir.join(".env"), "SECRET_KEY_BASE=1234\n").unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/config"), "[core]\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("leak.txt")).unwrap();
}

fn counts(t: &Thrust) -> serde_json::Value {
    get(t.port, "/stats").unwrap().json()
}

fn start(public: &Path, served_by_thrust: bool) -> Thrust {
    let mut options =
        Options::puma("tests/apps/public_site.ru").env("PUBLIC_ROOT", public.to_string_lossy());
    if served_by_thrust {
        options = options.env("THRUST_PUBLIC_DIR", public.to_string_lossy());
    }
    Thrust::start_ready(options)
}

#[test]
fn public_files_are_answered_without_the_app() {
    let dir = tempfile::tempdir().unwrap();
    public_dir(dir.path());
    let t = start(dir.path(), true);
    let page = get(t.port, "/").unwrap();
    assert_eq!(page.status, 200);
    let links: Vec<String> = page
        .text()
        .lines()
        .filter_map(|l| l.split('"').nth(3).map(str::to_string))
        .collect();
    assert_eq!(links.len(), ASSETS, "{}", page.text());
    for link in &links {
        let r = get(t.port, link).unwrap();
        assert_eq!(r.status, 200, "{link}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{link}"
        );
        assert_eq!(r.header("content-type"), Some("text/css"), "{link}");
        // Stored: the next visitor's copy is a hit.
        assert!(
            wait_until(Duration::from_secs(5), || get(t.port, link)
                .unwrap()
                .header("x-cache")
                == Some("hit")),
            "{link}"
        );
    }
    // The precompressed sibling, for a client that takes br.
    let (head, body) = curl(
        t.port,
        "/assets/app0-3f2a9c00.css",
        &["Accept-Encoding: br"],
    );
    assert!(head.contains("content-encoding: br"), "{head}");
    assert!(String::from_utf8_lossy(&body).starts_with("/* asset 0 */"));
    // A file without a digest: sent, with its validators, not marked immutable.
    let robots = get(t.port, "/robots.txt").unwrap();
    assert_eq!(
        (robots.status, robots.text().as_str()),
        (200, "User-agent: *\n")
    );
    assert_eq!(robots.header("cache-control"), None);
    assert!(robots.header("last-modified").is_some());
    // Only the page reached Puma.
    let seen = counts(&t);
    assert_eq!(seen, serde_json::json!({ "/": 1 }), "the app saw {seen}");
}

#[test]
fn anything_that_is_not_a_file_below_the_directory_goes_to_the_app() {
    let dir = tempfile::tempdir().unwrap();
    public_dir(dir.path());
    let t = start(dir.path(), true);
    for target in [
        "/missing.css",
        "/assets",
        "/leak.txt",
        "/assets/../robots.txt",
        "/assets/%2e%2e/robots.txt",
        "/assets%2Fapp0-3f2a9c00.css",
        "/.env",
        "/.git/config",
        "/%2eenv",
    ] {
        let r = raw(
            t.port,
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .unwrap();
        assert_ne!(r.header("x-cache"), Some("hit"), "{target}");
        assert!(
            r.header("cache-control") != Some("public, max-age=31536000, immutable"),
            "{target} was answered by thrust"
        );
    }
    // Every one of them reached the app.
    let seen = counts(&t);
    let reached: u64 = seen
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(reached, 9, "the app saw {seen}");
    for path in ["/missing.css", "/assets", "/leak.txt", "/.git/config"] {
        assert_eq!(seen[path], 1, "{path} should have reached the app: {seen}");
    }
    // A POST to a file's path is the app's, and so is the health path.
    let post = request(
        t.port,
        "POST",
        "/robots.txt",
        &[("Host", "localhost")],
        b"x",
    )
    .unwrap();
    assert_eq!(post.status, 404);
    assert_eq!(counts(&t)["/robots.txt"], 1);
    assert_eq!(get(t.port, "/up").unwrap().text(), "OK");
}

#[test]
fn public_files_are_cached_by_path_whatever_the_host_or_query() {
    let dir = tempfile::tempdir().unwrap();
    public_dir(dir.path());
    let t = start(dir.path(), true);
    let asset = "/assets/app1-3f2a9c01.css";
    let fetch = |target: &str, host: &str| {
        raw(
            t.port,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(fetch(asset, "localhost").status, 200);
    assert!(wait_until(Duration::from_secs(5), || fetch(
        asset,
        "localhost"
    )
    .header("x-cache")
        == Some("hit")));
    // Made-up Hosts, queries and spellings of the path: the same stored file.
    for (target, host) in [
        ("/assets/app1-3f2a9c01.css?n=1", "localhost"),
        ("/assets/app1-3f2a9c01.css?n=2", "made-up.example"),
        ("/assets//app1-3f2a9c01.css", "other.example"),
        ("/assets/%61pp1-3f2a9c01.css?x", "x.example"),
    ] {
        let r = fetch(target, host);
        assert_eq!(r.status, 200, "{target} {host}");
        assert_eq!(r.header("x-cache"), Some("hit"), "{target} {host}");
    }
    // Digits in a name outside the asset prefix are not a fingerprint: no
    // year of caching, not stored.
    for report in ["/report-20240131.pdf", "/files/invoice-12345678.pdf"] {
        for _ in 0..2 {
            let r = fetch(report, "localhost");
            assert_eq!(r.status, 200, "{report}");
            assert_eq!(r.header("cache-control"), None, "{report}");
            assert_ne!(r.header("x-cache"), Some("hit"), "{report}");
        }
    }
    let seen = counts(&t);
    assert_eq!(seen, serde_json::json!({}), "the app saw {seen}");
}

#[test]
fn a_directory_swapped_for_a_symlink_never_leads_out() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("data.txt"), "SECRET outside").unwrap();
    let public = tempfile::tempdir().unwrap();
    let (dir, kept) = (public.path().join("dir"), public.path().join("dir.real"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), "inside").unwrap();
    let t = Thrust::start_ready(
        Options::app().env("THRUST_PUBLIC_DIR", public.path().to_string_lossy()),
    );
    // While requests come, the directory keeps turning into a symlink that
    // leads out, and back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapping = {
        let (stop, outside) = (stop.clone(), outside.path().to_path_buf());
        std::thread::spawn(move || {
            let mut swaps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::rename(&dir, &kept).unwrap();
                std::os::unix::fs::symlink(&outside, &dir).unwrap();
                std::fs::remove_file(&dir).unwrap();
                std::fs::rename(&kept, &dir).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let mut inside = 0;
    for _ in 0..1500 {
        let r = get(t.port, "/dir/data.txt").unwrap();
        assert!(!r.text().contains("SECRET"), "a request left the directory");
        inside += usize::from(r.text() == "inside");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapping.join().unwrap();
    assert!(
        swaps > 100 && inside > 0,
        "{swaps} swaps, {inside} answered from inside"
    );
}

#[test]
fn without_it_every_asset_reaches_the_app() {
    let dir = tempfile::tempdir().unwrap();
    public_dir(dir.path());
    let t = start(dir.path(), false);
    let page = get(t.port, "/").unwrap();
    for link in page.text().lines().filter_map(|l| l.split('"').nth(3)) {
        assert_eq!(get(t.port, link).unwrap().status, 200);
    }
    let seen = counts(&t);
    assert_eq!(seen.as_object().unwrap().len(), ASSETS + 1, "{seen}");
}

#[test]
fn a_public_dir_that_does_not_exist_stops_start_up() {
    let out = std::process::Command::new(THRUST)
        .args(["sleep", "5"])
        .env("HTTP_PORT", free_port().to_string())
        .env("THRUST_PUBLIC_DIR", "/nonexistent/public")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("THRUST_PUBLIC_DIR") && said.contains("an existing directory"),
        "{said}"
    );
}
