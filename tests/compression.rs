//! Response compression (SPEC §8).

mod common;

use std::io::{Read, Write};

use common::*;

fn expected_text(size: usize) -> Vec<u8> {
    let mut text = String::new();
    for i in 0..size / 40 + 1 {
        text.push_str(&format!("line {i:05} of some text that compresses well\n"));
    }
    text.truncate(size);
    text.into_bytes()
}

#[test]
fn every_encoding_decodes_with_curl() {
    let t = Thrust::start_ready(Options::app());
    for encoding in ["gzip", "br", "zstd"] {
        let (head, body) = curl(
            t.port,
            "/text?bytes=20000&h_ETag=%22v1%22",
            &[&format!("Accept-Encoding: {encoding}")],
        );
        assert!(
            head.contains(&format!("content-encoding: {encoding}")),
            "{head}"
        );
        assert!(head.contains("vary: accept-encoding"), "{head}");
        assert!(head.contains("etag: w/\"v1\""), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(body, expected_text(20000), "{encoding}");
    }
}

#[test]
fn client_quality_and_server_order_choose_the_encoding() {
    let t = Thrust::start_ready(Options::app());
    let encoding_for = |accept: &str| {
        request(t.port, "GET", "/text", &[("Accept-Encoding", accept)], b"")
            .unwrap()
            .header("content-encoding")
            .map(str::to_string)
    };
    assert_eq!(
        encoding_for("gzip, deflate, br, zstd").as_deref(),
        Some("zstd")
    );
    assert_eq!(encoding_for("gzip;q=1, br;q=0.8").as_deref(), Some("gzip"));
    assert_eq!(encoding_for("identity").as_deref(), None);
    assert_eq!(encoding_for("gzip;q=0").as_deref(), None);
    drop(t);

    let t = Thrust::start_ready(Options::app().env("THRUST_COMPRESSION", "gzip,br"));
    let r = request(
        t.port,
        "GET",
        "/text",
        &[("Accept-Encoding", "zstd, br, gzip")],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn only_large_enough_compressible_responses_are_compressed() {
    let t = Thrust::start_ready(Options::app());
    let ae = [("Accept-Encoding", "gzip")];
    for (target, why) in [
        ("/text?bytes=1000", "under 1024 bytes"),
        ("/text?type=image/png", "an image"),
        ("/text?type=application/octet-stream", "unknown binary"),
        ("/text?type=application/zip", "an archive"),
        ("/text?type=none", "no content type"),
        ("/text?h_Content_Encoding=identity", "already encoded"),
        ("/text?h_Cache_Control=no-transform", "no-transform"),
    ] {
        let r = request(t.port, "GET", target, &ae, b"").unwrap();
        assert_eq!(
            r.header("content-encoding"),
            if why == "already encoded" {
                Some("identity")
            } else {
                None
            },
            "{why}"
        );
        assert_eq!(r.status, 200);
    }
    let r = request(t.port, "HEAD", "/text", &ae, b"").unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = request(t.port, "GET", "/text", &[], b"").unwrap();
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, Some("Accept-Encoding"))
    );
    assert_eq!(r.body, expected_text(5000));
    drop(t);

    let t = Thrust::start_ready(Options::app().env("GZIP_COMPRESSION_ENABLED", "false"));
    let r = request(t.port, "GET", "/text", &ae, b"").unwrap();
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn compressed_event_streams_stay_live() {
    let t = Thrust::start_ready(Options::app());
    let mut stream = connect(t.port);
    stream
        .write_all(b"GET /sse?n=3&interval=0.7 HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut arrivals = Vec::new();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        arrivals.push(std::time::Instant::now());
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("content-encoding: gzip"), "{text}");
    assert!(
        arrivals.len() >= 3
            && *arrivals.last().unwrap() - arrivals[0] >= std::time::Duration::from_millis(1000),
        "compressed events arrived together"
    );
}

#[test]
fn padding_differs_between_contents_and_is_stable_for_one() {
    let t = Thrust::start_ready(Options::app());
    let length = |target: &str| {
        request(t.port, "GET", target, &[("Accept-Encoding", "gzip")], b"")
            .unwrap()
            .body
            .len()
    };
    let lengths: std::collections::HashSet<usize> = (0..20)
        .map(|i| length(&format!("/text?variant={i}")))
        .collect();
    assert!(
        lengths.len() > 3,
        "compressed lengths should vary across requests: {lengths:?}"
    );
    assert_eq!(
        length("/text?variant=1"),
        length("/text?variant=1"),
        "one content, one padding"
    );
    for encoding in ["br", "zstd"] {
        let lengths: std::collections::HashSet<usize> = (0..20)
            .map(|i| {
                request(
                    t.port,
                    "GET",
                    &format!("/text?variant={i}"),
                    &[("Accept-Encoding", encoding)],
                    b"",
                )
                .unwrap()
                .body
                .len()
            })
            .collect();
        assert!(lengths.len() > 3, "{encoding}: {lengths:?}");
    }
    drop(t);

    let t = Thrust::start_ready(Options::app().env("GZIP_COMPRESSION_JITTER", "0"));
    let lengths: std::collections::HashSet<usize> = (0..10)
        .map(|i| {
            request(
                t.port,
                "GET",
                &format!("/text?variant={i}"),
                &[("Accept-Encoding", "gzip")],
                b"",
            )
            .unwrap()
            .body
            .len()
        })
        .collect();
    assert_eq!(lengths.len(), 1, "no jitter: one length");
}

#[test]
fn disable_on_auth_guards_credentials_and_private_responses() {
    let t = Thrust::start_ready(Options::app().env("GZIP_COMPRESSION_DISABLE_ON_AUTH", "1"));
    let encoding = |target: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("Accept-Encoding", "gzip")];
        all.extend_from_slice(headers);
        request(t.port, "GET", target, &all, b"")
            .unwrap()
            .header("content-encoding")
            .map(str::to_string)
    };
    assert_eq!(encoding("/text", &[]).as_deref(), Some("gzip"));
    assert_eq!(encoding("/text", &[("Cookie", "session=1")]), None);
    assert_eq!(encoding("/text", &[("Authorization", "Bearer x")]), None);
    assert_eq!(encoding("/text", &[("X-Csrf-Token", "t")]), None);
    assert_eq!(encoding("/text?h_Set_Cookie=a%3D1", &[]), None);
    assert_eq!(encoding("/text?h_Cache_Control=private", &[]), None);
    assert_eq!(encoding("/text?h_Cache_Control=no-store", &[]), None);
    assert_eq!(encoding("/text?h_Vary=Cookie", &[]), None);
}
