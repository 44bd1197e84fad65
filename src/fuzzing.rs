//! Entry points for the fuzz targets in `fuzz/` and for the tests that
//! replay and mutate their corpora (`tests/fuzz_corpora.rs`): every parser
//! of input from outside — clients, the app, the environment, STORAGE_PATH — fed
//! arbitrary bytes. Each must not panic, and must keep the properties
//! checked here.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderValue, VARY};

use crate::config::{Config, Encoding};
use crate::http::accept_encoding::negotiate;
use crate::http::cache_control::CacheControl;
use crate::http::conditional;
use crate::http::head_scan::{Head, HeadScanner, MAX_HEAD_BYTES};
use crate::http::range::{self, RangeRequest};

/// A fuzz target: takes any bytes.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: their inputs live in `fuzz/seeds/<name>/` and
/// `fuzz/regressions/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("cache_control", cache_control),
    ("vary", vary),
    ("accept_encoding", accept_encoding),
    ("range", range),
    ("conditional", conditional),
    ("head_scan", head_scan),
    ("config", config),
    ("send_file_path", send_file_path),
    ("acme_storage", acme_storage),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

pub fn cache_control(data: &[u8]) {
    let text = text(data);
    let cc = CacheControl::parse(text.split('\n'));
    if let Some(seconds) = cc.shared_lifetime() {
        assert!(seconds > 0 && cc.public && !cc.private && !cc.no_store && !cc.no_cache);
    }
}

pub fn vary(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(VARY, value);
        }
    }
    if let Some(names) = crate::pipeline::cache::policy::vary_names(&headers) {
        assert!(names.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    }
}

pub fn accept_encoding(data: &[u8]) {
    let offered = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];
    let text = text(data);
    if let Some(chosen) = negotiate(Some(&text), &offered) {
        assert!(offered.contains(&chosen));
    }
    assert_eq!(negotiate(Some(&text), &[]), None);
}

pub fn range(data: &[u8]) {
    let (size, header) = data.split_at(data.len().min(8));
    let mut bytes = [0u8; 8];
    bytes[..size.len()].copy_from_slice(size);
    let size = u64::from_le_bytes(bytes);
    match range::parse(Some(&text(header)), size) {
        RangeRequest::Part { start, end } => assert!(start <= end && end < size),
        RangeRequest::Whole | RangeRequest::Unsatisfiable => {}
    }
}

pub fn conditional(data: &[u8]) {
    let text = text(data);
    let (header, etag) = text.split_once('\n').unwrap_or((&text, "\"x\""));
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    conditional::match_strong(header, Some(etag));
    conditional::none_match(header, Some(etag));
    conditional::not_modified_since(header, modified);
    conditional::modified_since(header, modified);
    conditional::range_still_valid(header, Some(etag), Some(modified));
    // A weak tag never matches strongly (`*` matches any representation).
    if header.trim() != "*" {
        assert!(!conditional::match_strong(header, Some("W/\"x\"")));
    }
}

/// The scanner sees the same requests however the bytes are split.
pub fn head_scan(data: &[u8]) {
    let heads = |piece: usize| {
        let mut scanner = HeadScanner::default();
        let mut found: Vec<Head> = Vec::new();
        for chunk in data.chunks(piece.max(1)) {
            scanner.feed(chunk, |head| found.push(head));
        }
        (found, scanner.between_requests())
    };
    let (one_by_one, between) = heads(1);
    let (whole, between_whole) = heads(data.len());
    assert_eq!(between, between_whole);
    assert_eq!(one_by_one, whole);
    if data.len() <= MAX_HEAD_BYTES {
        assert!(!one_by_one.contains(&Head::TooLarge));
    }
}

/// `NAME=value` lines, as the environment: start-up either accepts them or
/// names one of the variables given.
pub fn config(data: &[u8]) {
    let text = text(data);
    let vars: HashMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    if let Err(e) = Config::from_vars(&vars) {
        assert!(vars.contains_key(&e.variable), "{e}");
    }
}

/// An X-Accel-Mapping (first line) and the value the app names (second):
/// a file thrust would send is always under the mapped root, with no dot
/// segment left.
pub fn send_file_path(data: &[u8]) {
    let text = text(data);
    let (mapping, value) = text.split_once('\n').unwrap_or((&text, "/files/a"));
    let vars: HashMap<String, String> = [
        ("THRUST_SEND_FILE_HEADER", "X-Accel-Redirect"),
        ("THRUST_ACCEL_MAPPING", mapping),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let Ok(config) = Config::from_vars(&vars) else {
        return;
    };
    let Ok(path) = crate::pipeline::sendfile::path::resolve(value.as_bytes(), &config) else {
        return;
    };
    if let Some((root, _)) = &config.accel_mapping {
        let root = std::path::Path::new(root);
        let root_has_dots = root
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        assert!(root_has_dots || path.starts_with(root), "{path:?}");
    }
    assert!(path
        .components()
        .all(|c| !matches!(c, std::path::Component::ParentDir)));
}

/// A stored chain and key (thrust's two files, split at the first NUL), or
/// Thruster's one file holding both.
pub fn acme_storage(data: &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => {
            let _ = crate::tls::acme::certified(&data[..at], &data[at + 1..]);
        }
        None => {
            let _ = crate::tls::acme::certified(data, data);
        }
    }
}
