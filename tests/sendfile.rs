//! X-Sendfile (SPEC §6).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn sendfile_target(path: &Path, extra: &str) -> String {
    format!("/sendfile?path={}{extra}", path.display())
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

#[test]
fn the_app_is_told_which_header_and_clients_cannot_choose() {
    let t = Thrust::start_ready(Options::app());
    let r = request(
        t.port,
        "GET",
        "/echo",
        &[
            ("X-Sendfile-Type", "X-Accel-Redirect"),
            ("X-Accel-Mapping", "/=/"),
        ],
        b"",
    )
    .unwrap();
    let h = &r.json()["headers"];
    assert_eq!(h["x-sendfile-type"], "X-Sendfile");
    assert!(h.get("x-accel-mapping").is_none());
    drop(t);

    let t = Thrust::start_ready(Options::app().env("X_SENDFILE_ENABLED", "0"));
    let r = request(
        t.port,
        "GET",
        "/echo",
        &[
            ("X-Sendfile-Type", "X-Sendfile"),
            ("X-Accel-Mapping", "/=/"),
        ],
        b"",
    )
    .unwrap();
    let h = &r.json()["headers"];
    assert!(
        h.get("x-sendfile-type").is_none() && h.get("x-accel-mapping").is_none(),
        "{h}"
    );
    // Disabled: the app's header passes through and its body is sent.
    let r = get(t.port, "/sendfile?path=/etc/hostname").unwrap();
    assert_eq!(r.text(), "body from the app\n");
}

#[test]
fn files_are_served_with_the_apps_headers_and_their_own_metadata() {
    let t = Thrust::start_ready(Options::app());
    let file = write_file(t.dir.path(), "report.css", &sample(5000));
    let target = sendfile_target(
        &file,
        "&type=none&h_ETag=%22v1%22&h_Content_Disposition=attachment&h_Cache_Control=private",
    );
    let r = get(t.port, &target).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, sample(5000));
    assert_eq!(r.header("content-length"), Some("5000"));
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert_eq!(r.header("content-disposition"), Some("attachment"));
    assert_eq!(r.header("cache-control"), Some("private"));
    assert_eq!(r.header("x-sendfile"), None);
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!(
        r.header("last-modified"),
        Some(httpdate::fmt_http_date(modified).as_str())
    );

    let r = request(t.port, "HEAD", &target, &[], b"").unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("5000")));
}

#[test]
fn ranges_and_conditional_requests() {
    let t = Thrust::start_ready(Options::app());
    let file = write_file(t.dir.path(), "data.bin", &sample(1000));
    let target = sendfile_target(&file, "&h_ETag=%22v1%22");

    let r = request(t.port, "GET", &target, &[("Range", "bytes=10-19")], b"").unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.body, &sample(1000)[10..20]);
    let r = request(t.port, "GET", &target, &[("Range", "bytes=-10")], b"").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (206, &sample(1000)[990..]));
    let r = request(t.port, "GET", &target, &[("Range", "bytes=5000-")], b"").unwrap();
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */1000"))
    );
    // A stale If-Range gets the whole file.
    let r = request(
        t.port,
        "GET",
        &target,
        &[("Range", "bytes=0-9"), ("If-Range", "\"v0\"")],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.body.len()), (200, 1000));

    let r = request(
        t.port,
        "GET",
        &target,
        &[("If-None-Match", "\"v0\", \"v1\"")],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.body.len()), (304, 0));
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let r = request(
        t.port,
        "GET",
        &target,
        &[("If-Modified-Since", &httpdate::fmt_http_date(modified))],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 304);
    let r = request(
        t.port,
        "GET",
        &target,
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn missing_files_are_404_and_relative_paths_500() {
    let t = Thrust::start_ready(Options::app());
    let r = get(t.port, "/sendfile?path=/nonexistent/file.txt").unwrap();
    assert_eq!(r.status, 404);
    let r = get(t.port, "/sendfile?path=relative/file.txt").unwrap();
    assert_eq!(r.status, 500);
    let line = t
        .wait_log(Duration::from_secs(2), |l| {
            l["level"] == "ERROR" && l["path"] == "relative/file.txt"
        })
        .unwrap();
    assert!(line["msg"].as_str().unwrap().contains("absolute"));
}

#[test]
fn precompressed_siblings_follow_accept_encoding() {
    let t = Thrust::start_ready(Options::app());
    let file = write_file(t.dir.path(), "app.js", b"console.log('identity')");
    write_file(t.dir.path(), "app.js.gz", b"gzip bytes");
    write_file(t.dir.path(), "app.js.br", b"brotli bytes");
    let target = sendfile_target(&file, "&type=text/javascript");

    let r = request(t.port, "GET", &target, &[("Accept-Encoding", "gzip")], b"").unwrap();
    assert_eq!(
        (r.text().as_str(), r.header("content-encoding")),
        ("gzip bytes", Some("gzip"))
    );
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("content-type"), Some("text/javascript"));
    let r = request(
        t.port,
        "GET",
        &target,
        &[("Accept-Encoding", "gzip, br, zstd")],
        b"",
    )
    .unwrap();
    assert_eq!(
        (r.text().as_str(), r.header("content-encoding")),
        ("brotli bytes", Some("br"))
    );
    let r = request(t.port, "GET", &target, &[], b"").unwrap();
    assert_eq!(
        (r.text().as_str(), r.header("content-encoding")),
        ("console.log('identity')", None)
    );
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn precompressed_files_the_app_names_keep_their_encoding() {
    // What Rails does for a .gz asset behind Rack::Sendfile: the app picks
    // app.css.gz itself and says Content-Encoding: gzip.
    let t = Thrust::start_ready(Options::app());
    let css = "body { color: #123456 }\n".repeat(200);
    let packed = gzip(css.as_bytes());
    let file = write_file(t.dir.path(), "app.css.gz", &packed);
    let target = sendfile_target(&file, "&type=none&h_Content_Encoding=gzip");
    for accept in ["gzip", "br, gzip", "zstd, br, gzip"] {
        let r = request(t.port, "GET", &target, &[("Accept-Encoding", accept)], b"").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{accept}");
        assert_eq!(
            r.body, packed,
            "{accept}: the file's bytes, never encoded again"
        );
        let length = packed.len().to_string();
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        assert_eq!(r.header("content-type"), Some("text/css"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    }
    // A browser (curl decoding as one) gets the stylesheet.
    let (head, body) = curl(t.port, &target, &[]);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert_eq!(String::from_utf8(body).unwrap(), css);
    // Ranges and HEAD apply to the encoded bytes that are sent.
    let r = request(t.port, "GET", &target, &[("Range", "bytes=0-9")], b"").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (206, &packed[..10]));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = request(t.port, "HEAD", &target, &[], b"").unwrap();
    assert_eq!(
        r.header("content-length"),
        Some(packed.len().to_string().as_str())
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn x_accel_redirect_maps_uris_back_to_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "doc.txt", b"mapped file");
    let mapping = format!("{}/=/private/", dir.path().display());
    let t = Thrust::start_ready(
        Options::app()
            .env("THRUST_SEND_FILE_HEADER", "X-Accel-Redirect")
            .env("THRUST_ACCEL_MAPPING", mapping),
    );
    let r = get(t.port, &sendfile_target(&file, "")).unwrap();
    assert_eq!(r.text(), "mapped file");
    let seen = t.app_requests("/sendfile");
    assert_eq!(seen[0]["headers"]["x-sendfile-type"], "X-Accel-Redirect");
    assert_eq!(
        seen[0]["headers"]["x-accel-mapping"],
        format!("{}/=/private/", dir.path().display())
    );
}

#[test]
fn a_2gb_sparse_file_streams_with_flat_memory() {
    let t = Thrust::start_ready(Options::app());
    let path = t.dir.path().join("big.iso");
    let size = 2u64 << 30;
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let (rss_before, _) = t.memory_kib();
    let received = bytes_received(t.port, &sendfile_target(&path, ""));
    assert!(received > size && received < size + 1024, "{received}");
    let (_, peak) = t.memory_kib();
    assert!(
        peak < rss_before + 32 * 1024,
        "memory grew with the file: {rss_before} KiB before, peak {peak} KiB"
    );
}

/// Bytes no short period can fake: an offset error shows.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A body from curl over plain HTTP/1.1, or h2c with `--http2-prior-knowledge`.
fn curl_body(port: u16, target: &str, extra: &[&str]) -> Vec<u8> {
    let url = format!("http://127.0.0.1:{port}{target}");
    let mut args = vec!["-s", "-f", "--max-time", "20"];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = run_tool("curl", &args);
    assert!(out.status.success(), "curl {args:?}: {:?}", out.status);
    out.stdout
}

#[test]
fn large_files_arrive_whole_and_in_parts_whatever_carries_them() {
    // 3 MB: twelve parts of 256 KiB, more than the eight slots a plain
    // HTTP/1 connection sends them through, so slots are reused.
    let data = noise(3_000_000);
    let plain = Thrust::start_ready(Options::app());
    let h2c = Thrust::start_ready(Options::app().env("H2C_ENABLED", "1"));
    let file = write_file(plain.dir.path(), "big.bin", &data);
    let target = sendfile_target(&file, "&type=application/octet-stream");
    for t in [&plain, &h2c] {
        assert!(curl_body(t.port, &target, &[]) == data, "whole file");
        let part = curl_body(t.port, &target, &["-r", "300000-2600000"]);
        assert!(part == data[300_000..=2_600_000], "range");
        // Several on one keep-alive connection, one after the other.
        let url = format!("http://127.0.0.1:{}{target}", t.port);
        let out = run_tool("curl", &["-s", "--max-time", "20", &url, &url, &url]);
        assert!(out.stdout == [&data[..], &data[..], &data[..]].concat());
    }
    assert!(curl_body(h2c.port, &target, &["--http2-prior-knowledge"]) == data);
    let r = request(plain.port, "HEAD", &target, &[], b"").unwrap();
    assert_eq!(r.header("content-length"), Some("3000000"));
    assert!(r.body.is_empty());

    // A text file is compressed on its way out, from its real bytes, for a
    // client that accepts it, and sent as it is to one that does not.
    let text: Vec<u8> = noise(2_000_000).iter().map(|b| b'a' + b % 16).collect();
    let file = write_file(plain.dir.path(), "big.txt", &text);
    let target = sendfile_target(&file, "");
    let (head, body) = curl(plain.port, &target, &["Accept-Encoding: gzip"]);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(body == text, "decoded text");
    assert!(curl_body(plain.port, &target, &[]) == text, "identity text");
}

/// Puma with Rack::Sendfile in X-Accel-Redirect mode over `root`, mapped
/// to /protected/.
fn puma_accel(root: &Path) -> Options<'static> {
    Options::puma("tests/apps/accel.ru")
        .env("ACCEL_ROOT", root.display().to_string())
        .env("THRUST_SEND_FILE_HEADER", "X-Accel-Redirect")
        .env(
            "THRUST_ACCEL_MAPPING",
            format!("{}/=/protected/", root.display()),
        )
}

#[test]
fn rack_sendfile_names_that_it_percent_encodes_are_sent_with_x_accel_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    std::fs::create_dir(&root).unwrap();
    let names = [
        ("with space.txt", "/with%20space.txt"),
        ("q?mark.txt", "/q%3Fmark.txt"),
        ("naïve.txt", "/na%C3%AFve.txt"),
        ("100%.txt", "/100%25.txt"),
        ("plain.txt", "/plain.txt"),
    ];
    for (name, _) in names {
        write_file(&root, name, format!("contents of {name}").as_bytes());
    }
    let t = Thrust::start_ready(puma_accel(&root));
    for (name, target) in names {
        let r = get(t.port, target).unwrap();
        assert_eq!(
            (r.status, r.text()),
            (200, format!("contents of {name}")),
            "{target}"
        );
        assert_eq!(r.header("x-accel-redirect"), None);
    }
}

#[test]
fn x_accel_redirect_never_leaves_the_mapped_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    write_file(&root, "plain.txt", b"inside");
    let secret = write_file(dir.path(), "secret.txt", b"outside the root");
    let t = Thrust::start_ready(puma_accel(&root));
    let named = |uri: &str| {
        let query: String = uri.bytes().map(|b| format!("%{b:02X}")).collect();
        get(t.port, &format!("/named?uri={query}")).unwrap()
    };
    // Dot segments are resolved before the mapping is applied.
    let r = named("/protected/sub/../plain.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "inside"));
    for uri in [
        "/protected/../secret.txt".to_string(),
        "/protected/%2e%2e/secret.txt".to_string(),
        "/protected/..%2Fsecret.txt".to_string(),
        // Outside the mapped URI: a raw path is not taken for a file.
        secret.display().to_string(),
    ] {
        let r = named(&uri);
        assert_eq!(r.status, 404, "{uri}");
        assert!(!r.text().contains("outside the root"), "{uri}");
    }
    assert!(t
        .wait_log(Duration::from_secs(5), |l| l["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not send"))
            && l["reason"] == "a URI outside THRUST_ACCEL_MAPPING")
        .is_some());
}

#[test]
fn send_file_roots_refuse_paths_outside_them() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir(&public).unwrap();
    let inside = write_file(&public, "app.css", b"body{}");
    let outside = write_file(dir.path(), "master.key", b"secret");
    let t = Thrust::start_ready(
        Options::app().env("THRUST_SEND_FILE_ROOTS", public.display().to_string()),
    );
    let r = get(t.port, &sendfile_target(&inside, "")).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "body{}"));
    let sneaky = format!("{}/../master.key", public.display());
    for path in [outside.display().to_string(), sneaky] {
        let r = get(t.port, &format!("/sendfile?path={path}")).unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert_ne!(r.text(), "secret");
    }
    assert!(t
        .wait_log(Duration::from_secs(5), |l| l["reason"]
            == "a path outside THRUST_SEND_FILE_ROOTS")
        .is_some());
}

#[test]
fn a_fifo_or_a_device_is_refused_without_blocking_a_worker() {
    let t = Thrust::start_ready(Options::app());
    let fifo = t.dir.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for path in [fifo.as_path(), Path::new("/dev/zero"), t.dir.path()] {
        let mut stream = connect(t.port);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            sendfile_target(path, "")
        );
        std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
        let r = read_response(&mut std::io::BufReader::new(stream), false)
            .unwrap_or_else(|e| panic!("{}: no answer ({e})", path.display()));
        assert_eq!(r.status, 404, "{}", path.display());
    }
}

#[test]
fn an_apps_own_206_naming_a_file_gets_the_range_thrust_cuts() {
    // Rack::Files answers a Range request with 206 and its Content-Range;
    // Rack::Sendfile then names the whole file.
    let t = Thrust::start_ready(Options::app());
    let file = write_file(t.dir.path(), "video.bin", &sample(1000));
    let target = sendfile_target(
        &file,
        "&status=206&h_Content_Range=bytes%2010-19/1000&type=application/octet-stream",
    );
    let r = request(t.port, "GET", &target, &[("Range", "bytes=10-19")], b"").unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.body, &sample(1000)[10..20]);
    // Without a Range of the client's, the whole file, as a 200.
    let r = request(t.port, "GET", &target, &[], b"").unwrap();
    assert_eq!((r.status, r.body.len()), (200, 1000));
    assert_eq!(r.header("content-range"), None);
}

#[test]
fn a_stored_file_the_app_encoded_itself_is_keyed_on_accept_encoding() {
    // The app names app.css.gz with Content-Encoding: gzip but no Vary.
    let t = Thrust::start_ready(Options::app());
    let packed = gzip("body { color: #123456 }\n".repeat(200).as_bytes());
    let file = write_file(t.dir.path(), "app.css.gz", &packed);
    let target = sendfile_target(
        &file,
        "&type=none&h_Content_Encoding=gzip&h_Cache_Control=public,max-age=600",
    );
    let gzip_client = [("Accept-Encoding", "gzip")];
    let r = request(t.port, "GET", &target, &gzip_client, b"").unwrap();
    assert_eq!(r.header("x-cache"), Some("miss"));
    let stored = wait_until(Duration::from_secs(5), || {
        request(t.port, "GET", &target, &gzip_client, b"")
            .is_ok_and(|r| r.header("x-cache") == Some("hit"))
    });
    assert!(stored, "the gzip answer was never stored");
    // A client that accepts no gzip is never handed the stored gzip bytes.
    let r = request(
        t.port,
        "GET",
        &target,
        &[("Accept-Encoding", "identity")],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
}

/// Paths of the files `pid` holds open.
fn open_files(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_sent_file_is_closed_once_its_response_is_done_on_a_kept_connection() {
    let t = Thrust::start_ready(Options::app());
    let file = write_file(t.dir.path(), "report.bin", &noise(1 << 20));
    let mut stream = connect(t.port);
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        sendfile_target(&file, "")
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let r = read_response(&mut reader, false).unwrap();
    assert_eq!(r.body.len(), 1 << 20);
    // The connection stays open (and is parked); the file must not.
    std::fs::remove_file(&file).unwrap();
    let name = file.display().to_string();
    let closed = wait_until(Duration::from_secs(2), || {
        !open_files(t.pid()).iter().any(|f| f.starts_with(&name))
    });
    assert!(closed, "still open: {:?}", open_files(t.pid()));
    drop(stream);
}

#[test]
fn pipelined_files_on_one_connection_never_share_a_slot() {
    let t = Thrust::start_ready(Options::app());
    // Nine 256 KiB parts: the first file's last part comes around to the
    // slot the second file's first part would take.
    let first = noise(9 * 256 * 1024 + 100);
    let second: Vec<u8> = noise(600 * 1024).iter().map(|b| b ^ 0x5a).collect();
    let a = write_file(t.dir.path(), "a.bin", &first);
    let b = write_file(t.dir.path(), "b.bin", &second);
    for _ in 0..5 {
        let mut stream = connect(t.port);
        let heads = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\nGET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            sendfile_target(&a, ""),
            sendfile_target(&b, "")
        );
        std::io::Write::write_all(&mut stream, heads.as_bytes()).unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let one = read_response(&mut reader, false).unwrap();
        let two = read_response(&mut reader, false).unwrap();
        assert!(one.body == first, "the first file's bytes were not its own");
        assert!(
            two.body == second,
            "the second file's bytes were not its own"
        );
    }
}

#[test]
fn the_apps_own_body_beside_a_named_file_does_not_cost_a_new_app_connection() {
    // The test app sends a short body with the header (as Django and many
    // Rack apps do): thrust reads it away, and the connection is reused.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "report.txt", &sample(1024));
    let t = Thrust::start_ready(Options::app());
    for _ in 0..20 {
        let r = get(t.port, &sendfile_target(&file, "")).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, sample(1024));
    }
    let peers: std::collections::HashSet<_> = t
        .app_requests("/sendfile")
        .iter()
        .map(|e| e["peer"].as_u64().unwrap())
        .collect();
    assert!(
        peers.len() <= 4,
        "20 X-Sendfile answers one after another took {} app connections",
        peers.len()
    );
}
