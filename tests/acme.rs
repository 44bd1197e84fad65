//! Automatic certificates against a real ACME server: Debian's pebble, with
//! pebble-challtestsrv answering its DNS queries with 127.0.0.1 (SPEC §9;
//! `common::pebble`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::pebble::{acme_thrust, served_leaf, Pebble};
use common::*;

struct Site {
    http: u16,
    https: u16,
    storage: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            http: free_port(),
            https: free_port(),
            storage: tempfile::tempdir().unwrap(),
        }
    }

    /// thrust for app.test, with the given extra settings.
    fn thrust(&self, pebble: &Pebble, extra: &[(&'static str, &str)]) -> Thrust {
        let storage = self.storage.path().join("certs");
        acme_thrust(pebble, &storage, (self.http, self.https), extra)
    }
}

/// When the first certificate of a PEM chain expires, in Unix time.
fn not_after(pem: &[u8]) -> i64 {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    parsed
        .parse_x509()
        .unwrap()
        .validity()
        .not_after
        .timestamp()
}

/// Waits for `t` to be ready, having taken its certificate from STORAGE_PATH.
fn assert_loads_from_storage(t: &Thrust) {
    t.wait_ready();
    assert!(
        t.wait_log(Duration::from_secs(5), |l| l["msg"]
            == "Certificate loaded from storage")
            .is_some(),
        "{}",
        t.log_text()
    );
}

fn obtained(t: &Thrust, limit: Duration) -> bool {
    t.wait_log(limit, |l| {
        l["msg"] == "Certificate obtained" && l["domain"] == "app.test"
    })
    .is_some()
}

#[test]
fn tls_alpn_01_order_end_to_end_with_private_storage() {
    let site = Site::new();
    let pebble = Pebble::start(site.http, site.https, None);
    let metrics_port = free_port().to_string();
    let t = site.thrust(&pebble, &[("THRUST_METRICS_PORT", &metrics_port)]);
    t.wait_ready();
    // A handshake that arrives while the order is in flight waits for it.
    let root = pebble.issuing_root();
    assert_eq!(
        https_get(site.https, &root, "app.test", "/").unwrap(),
        "hello from app\n"
    );
    assert!(obtained(&t, Duration::from_secs(30)), "{}", t.log_text());

    let storage = site.storage.path().join("certs");
    assert_eq!(
        std::fs::metadata(&storage).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for name in ["app.test.crt", "app.test.key"] {
        assert_eq!(
            std::fs::metadata(storage.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{name}"
        );
    }
    // /metrics tells when the certificate expires.
    let pem = std::fs::read(storage.join("app.test.crt")).unwrap();
    let expires = scrape(metrics_port.parse().unwrap())
        ["thrust_certificate_expiry_timestamp_seconds{domain=\"app.test\"}"];
    assert_eq!(expires, not_after(&pem) as f64);

    // HTTP redirects to the domain; other names are refused on HTTPS without an order.
    let r = request(site.http, "GET", "/x", &[("Host", "app.test")], b"").unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://app.test/x"))
    );
    let orders = pebble.orders();
    assert!(https_get(site.https, &root, "other.test", "/").is_err());
    assert_eq!(
        pebble.orders(),
        orders,
        "an unlisted name never reaches the ACME server"
    );
}

#[test]
fn http_01_order_end_to_end() {
    let site = Site::new();
    let pebble = Pebble::start(site.http, site.https, None);
    let t = site.thrust(&pebble, &[("THRUST_ACME_CHALLENGE", "http-01")]);
    assert!(obtained(&t, Duration::from_secs(30)), "{}", t.log_text());
    let answered = t.log_lines().iter().any(|l| {
        l["msg"] == "Request"
            && l["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/.well-known/acme-challenge/"))
            && l["status"] == 200
    });
    assert!(answered, "pebble fetched the HTTP-01 answer from thrust");
    assert_eq!(
        https_get(site.https, &pebble.issuing_root(), "app.test", "/").unwrap(),
        "hello from app\n"
    );
}

#[test]
fn http_01_orders_for_several_domains_run_at_once_and_all_succeed() {
    let site = Site::new();
    let pebble = Pebble::start_slow_validations(site.http, site.https, 5);
    let domains = [
        "a.test", "b.test", "c.test", "d.test", "e.test", "f.test", "g.test", "h.test",
    ];
    let listed = domains.join(",");
    let t = site.thrust(
        &pebble,
        &[
            ("THRUST_ACME_CHALLENGE", "http-01"),
            ("TLS_DOMAIN", &listed),
        ],
    );
    // Every order succeeds on its first attempt: a failed one is retried
    // only after 30 s. One order finishing must not withdraw the answers
    // the others' validations have yet to fetch.
    for domain in domains {
        let line = t.wait_log(Duration::from_secs(25), |l| {
            l["domain"] == domain
                && (l["msg"] == "Certificate obtained" || l["msg"] == "Certificate failed")
        });
        assert_eq!(
            line.as_ref().map(|l| l["msg"].clone()),
            Some("Certificate obtained".into()),
            "{domain}: {}",
            t.log_text()
        );
    }
    let root = pebble.issuing_root();
    for domain in domains {
        assert_eq!(
            https_get(site.https, &root, domain, "/").unwrap(),
            "hello from app\n"
        );
    }
}

#[test]
fn a_restart_reuses_the_stored_certificate() {
    let site = Site::new();
    let pebble = Pebble::start(site.http, site.https, None);
    let t = site.thrust(&pebble, &[]);
    assert!(obtained(&t, Duration::from_secs(30)), "{}", t.log_text());
    drop(t);
    let orders = pebble.orders();

    let t = site.thrust(&pebble, &[]);
    assert_loads_from_storage(&t);
    assert_eq!(
        https_get(site.https, &pebble.issuing_root(), "app.test", "/").unwrap(),
        "hello from app\n"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pebble.orders(), orders, "no new order after a restart");
    assert!(!t
        .log_lines()
        .iter()
        .any(|l| l["msg"] == "Certificate ordered"));
}

#[test]
fn a_renew_within_beyond_the_lifetime_is_clamped_and_renewals_are_swapped_in_live() {
    let site = Site::new();
    // Certificates valid for 30 s; renewing within ten years would be an
    // order at once, forever. Clamped, renewal comes 10 s after each order.
    let pebble = Pebble::start_short_lived(site.http, site.https, 30);
    let t = site.thrust(&pebble, &[("THRUST_ACME_RENEW_WITHIN", "315360000")]);
    assert!(obtained(&t, Duration::from_secs(30)), "{}", t.log_text());
    let first = std::fs::read(site.storage.path().join("certs/app.test.crt")).unwrap();
    let renewed = t.wait_log(Duration::from_secs(40), |l| {
        l["msg"] == "Certificate renewed"
    });
    assert!(renewed.is_some(), "{}", t.log_text());
    let clamped = t
        .log_lines()
        .into_iter()
        .find(|l| l["msg"].as_str().is_some_and(|m| m.ends_with("clamped")))
        .unwrap_or_else(|| panic!("no clamp warning: {}", t.log_text()));
    assert_eq!(clamped["level"], "WARN");
    let lifetime = clamped["lifetime_s"].as_u64().unwrap();
    let ahead = clamped["renewing_s_before_expiry"].as_u64().unwrap();
    // Two thirds of the lifetime, to the second.
    assert!(ahead.abs_diff(lifetime * 2 / 3) <= 1, "{clamped}");
    let second = std::fs::read_to_string(site.storage.path().join("certs/app.test.crt")).unwrap();
    assert_ne!(first, second.as_bytes(), "a new certificate was stored");
    let leaf = served_leaf(site.https);
    assert!(
        !leaf.is_empty() && second.starts_with(&leaf),
        "the renewed certificate is the one served"
    );
    assert_eq!(
        https_get(site.https, &pebble.issuing_root(), "app.test", "/").unwrap(),
        "hello from app\n"
    );
    // Orders are spaced by the clamp (10 s), not a stream: the renewal's
    // order came about 10 s after the first.
    let orders: Vec<f64> = t
        .log_lines()
        .into_iter()
        .filter(|l| l["msg"] == "Certificate ordered")
        .filter_map(|l| seconds_of_day(l["time"].as_str()?))
        .collect();
    assert!(orders.len() >= 2, "orders at {orders:?}: {}", t.log_text());
    assert!(
        orders.windows(2).all(|pair| pair[1] - pair[0] >= 9.0),
        "orders at {orders:?} (seconds of the day)"
    );
}

#[test]
fn a_failing_acme_server_leaves_http_serving_and_is_retried() {
    let site = Site::new();
    // Nothing listens at the directory yet.
    let placeholder = Pebble::start(free_port(), free_port(), None);
    let options = Options::app()
        .env("TLS_DOMAIN", "app.test")
        .env("HTTP_PORT", site.http.to_string())
        .env("HTTPS_PORT", site.https.to_string())
        .env(
            "ACME_DIRECTORY",
            format!("https://127.0.0.1:{}/dir", free_port()),
        )
        .env("SSL_CERT_FILE", placeholder.ca.to_string_lossy())
        .env(
            "STORAGE_PATH",
            site.storage.path().join("certs").to_string_lossy(),
        );
    let mut t = Thrust::start(options);
    t.port = site.http;
    t.wait_ready();
    let failed = t
        .wait_log(Duration::from_secs(10), |l| {
            l["msg"] == "Certificate failed"
        })
        .unwrap();
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["retry_in_s"], 30);
    // HTTP and the health check keep working.
    let r = request(site.http, "GET", "/up", &[("Host", "app.test")], b"").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    // And the order is tried again after the backoff, longer the next time.
    let again = t.wait_log(Duration::from_secs(45), |l| {
        l["msg"] == "Certificate failed" && l["retry_in_s"] == 60
    });
    assert!(again.is_some(), "{}", t.log_text());
}

/// Every file below `dir`, in its folders too.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A small tmpfs mounted on a directory for the length of a test: a disk
/// that can fill up. Needs root; `None` when it cannot be mounted.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(on: &Path) -> Option<SmallDisk> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(on)
            .output()
            .ok()?;
        out.status.success().then(|| SmallDisk(on.into()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
#[ignore = "mounts a tmpfs, which needs root: scripts/test (and CI) run it"]
fn a_full_storage_disk_keeps_the_certificate_in_memory_and_stores_it_once_there_is_room() {
    let site = Site::new();
    let _disk =
        SmallDisk::mount(site.storage.path()).expect("mounting a 64 KiB tmpfs (needs root)");
    let storage = site.storage.path().join("certs");
    std::fs::create_dir(&storage).unwrap();
    let filler = site.storage.path().join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        while file.write_all(&[0; 4096]).is_ok() {}
    }
    let pebble = Pebble::start(site.http, site.https, None);
    let t = site.thrust(&pebble, &[]);
    assert!(obtained(&t, Duration::from_secs(30)), "{}", t.log_text());
    let refused = t
        .wait_log(Duration::from_secs(5), |l| {
            l["msg"] == "Not stored in STORAGE_PATH, kept in memory" && l["what"] == "certificate"
        })
        .unwrap_or_else(|| panic!("{}", t.log_text()));
    assert_eq!(refused["level"], "ERROR");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{refused}"
    );
    // The certificate is served from memory, and plain HTTP keeps working.
    assert_eq!(
        https_get(site.https, &pebble.issuing_root(), "app.test", "/").unwrap(),
        "hello from app\n"
    );
    let r = request(site.http, "GET", "/up", &[("Host", "app.test")], b"").unwrap();
    assert_eq!(r.status, 200);
    // The folders for claims and challenge answers are made at start-up.
    let leftovers = files_below(&storage);
    assert!(
        leftovers.is_empty(),
        "a failed write leaves no file: {leftovers:?}"
    );

    // Room again: the account and the certificate land without a new order.
    let orders = pebble.orders();
    std::fs::remove_file(&filler).unwrap();
    for what in ["account", "certificate"] {
        assert!(
            t.wait_log(Duration::from_secs(15), |l| l["msg"]
                == "Stored in STORAGE_PATH"
                && l["what"] == what)
                .is_some(),
            "{what}: {}",
            t.log_text()
        );
    }
    for name in ["app.test.crt", "app.test.key"] {
        assert!(storage.join(name).is_file(), "{name}");
    }
    assert_eq!(pebble.orders(), orders);
    drop(t);
    let t = site.thrust(&pebble, &[]);
    assert_loads_from_storage(&t);
}

#[test]
fn external_account_binding() {
    let site = Site::new();
    let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(site.http, site.https, Some(("kid-1", key)));
    let t = site.thrust(
        &pebble,
        &[
            ("EAB_KID", "kid-1"),
            ("EAB_HMAC_KEY", key),
            ("ACME_EMAIL", "ops@app.test"),
        ],
    );
    assert!(obtained(&t, Duration::from_secs(30)), "{}", t.log_text());
}

/// A certificate for app.test as Thruster's autocert cache stores it: the
/// key in its traditional PEM form ("EC PRIVATE KEY" / "RSA PRIVATE KEY"),
/// then the chain, in one file named after the domain (`+rsa` for RSA).
fn thruster_cache(dir: &Path, algorithm: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let (key, cert) = (dir.join("new.key"), dir.join("new.crt"));
    let mut args = vec!["req", "-x509", "-newkey", algorithm];
    if algorithm == "ec" {
        args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    args.extend([
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=app.test",
        "-addext",
        "subjectAltName=DNS:app.test",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    assert!(run_tool("openssl", &args).status.success());
    let traditional = run_tool(
        "openssl",
        &["pkey", "-in", key.to_str().unwrap(), "-traditional"],
    );
    let key_pem = String::from_utf8(traditional.stdout).unwrap();
    let kind = if algorithm == "ec" {
        "EC PRIVATE KEY"
    } else {
        "RSA PRIVATE KEY"
    };
    assert!(key_pem.contains(kind), "{key_pem}");
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let name = if algorithm == "ec" {
        "app.test"
    } else {
        "app.test+rsa"
    };
    std::fs::write(dir.join(name), format!("{key_pem}{cert_pem}")).unwrap();
    // Thruster's account key sits beside it.
    std::fs::write(dir.join("acme_account+key"), &key_pem).unwrap();
    std::fs::remove_file(key).unwrap();
    std::fs::remove_file(cert).unwrap();
    cert_pem.trim().to_string()
}

#[test]
fn certificates_thruster_stored_are_used_until_renewal() {
    for algorithm in ["ec", "rsa"] {
        let site = Site::new();
        let pebble = Pebble::start(site.http, site.https, None);
        let leaf = thruster_cache(&site.storage.path().join("certs"), algorithm);
        let t = site.thrust(&pebble, &[]);
        t.wait_ready();
        let loaded = t
            .wait_log(Duration::from_secs(5), |l| {
                l["msg"] == "Certificate loaded from storage"
            })
            .unwrap_or_else(|| panic!("{algorithm}: {}", t.log_text()));
        assert_eq!(loaded["stored_by"], "Thruster");
        assert_eq!(served_leaf(site.https), leaf, "{algorithm}");
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(pebble.orders(), 0, "{algorithm}: no new order");
    }
}

#[test]
fn http3_serves_the_ordered_certificate() {
    let site = Site::new();
    let pebble = Pebble::start(site.http, site.https, None);
    let t = site.thrust(&pebble, &[("THRUST_HTTP3", "1")]);
    t.wait_ready();
    assert!(obtained(&t, Duration::from_secs(30)), "{}", t.log_text());
    let root = pebble.issuing_root();
    let (ok, answers, stderr) = h3_client(site.https, &root, "app.test", "/", &[]);
    assert!(ok, "{answers:?} {stderr}");
    assert_eq!(answers[0]["status"], 200, "{answers:?}");
    assert_eq!(answers[0]["body"], "hello from app\n");
}

/// A log line's time (`2026-12-05T13:26:28.305Z`) as seconds of its day.
fn seconds_of_day(time: &str) -> Option<f64> {
    let clock = time.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = clock.split(':').map(str::parse::<f64>);
    let (h, m, s) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}
