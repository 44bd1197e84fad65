//! Copies of thrust sharing one STORAGE_PATH behind a round-robin balancer
//! (Debian's HAProxy: TCP for the HTTPS port, HTTP for port 80) that
//! pebble validates through: each name is ordered once (and the account
//! made once), any copy answers the CA's challenges, and every copy serves
//! the certificate and its renewals (SPEC §9, replicas).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pebble::{acme_thrust, served_leaf, Pebble};
use common::*;

/// HAProxy round-robin in front of the copies, killed on drop. A TCP
/// connect check every 300 ms takes a dead copy out after two failures
/// (one would take out a copy still starting), and a connection refused is
/// tried on the next copy.
struct Balancer {
    child: Child,
    http: u16,
    https: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    fn start(copies: &[Ports]) -> Balancer {
        let (http, https) = (free_port(), free_port());
        let servers = |pick: fn(&Ports) -> u16| -> String {
            copies
                .iter()
                .enumerate()
                .map(|(i, ports)| {
                    format!(
                        "  server copy{i} 127.0.0.1:{} check inter 300ms fall 2 rise 1\n",
                        pick(ports)
                    )
                })
                .collect()
        };
        let config = format!(
            "defaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch\n\
             listen http\n  mode http\n  bind 127.0.0.1:{http}\n  balance roundrobin\n{}\
             listen https\n  mode tcp\n  bind 127.0.0.1:{https}\n  balance roundrobin\n{}",
            servers(|p| p.http),
            servers(|p| p.https),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/install-deps installs it)");
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
        }));
        Balancer {
            child,
            http,
            https,
            _dir: dir,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
struct Ports {
    http: u16,
    https: u16,
}

fn ports(count: usize) -> Vec<Ports> {
    (0..count)
        .map(|_| Ports {
            http: free_port(),
            https: free_port(),
        })
        .collect()
}

/// A copy for app.test on `ports`, keeping its certificates in `storage`.
fn copy(pebble: &Pebble, storage: &Path, ports: Ports, extra: &[(&'static str, &str)]) -> Thrust {
    acme_thrust(pebble, storage, (ports.http, ports.https), extra)
}

/// Storage for the copies, their ports, and the balancer in front of them.
fn cluster(count: usize) -> (tempfile::TempDir, Vec<Ports>, Balancer) {
    let storage = tempfile::tempdir().unwrap();
    let ports = ports(count);
    let balancer = Balancer::start(&ports);
    (storage, ports, balancer)
}

/// The leaf each copy serves, once every copy serves one (None past `limit`).
fn leaves(ports: &[Ports], limit: Duration) -> Option<Vec<String>> {
    let mut found = None;
    wait_until(limit, || {
        let served: Vec<String> = ports.iter().map(|p| served_leaf(p.https)).collect();
        let all = served.iter().all(|leaf| leaf.starts_with("-----BEGIN"));
        found = all.then_some(served);
        all
    });
    found
}

fn logged(t: &Thrust, msg: &str) -> bool {
    t.log_lines().iter().any(|l| l["msg"] == msg)
}

fn logs(copies: &[Thrust]) -> String {
    copies
        .iter()
        .enumerate()
        .map(|(i, t)| format!("--- copy {i} ---\n{}", t.log_text()))
        .collect()
}

#[test]
fn three_copies_order_each_name_once_and_all_serve_it_for_each_challenge() {
    for challenge in ["http-01", "tls-alpn-01"] {
        let (storage, ports, balancer) = cluster(3);
        let pebble = Pebble::start(balancer.http, balancer.https, None);
        let copies: Vec<Thrust> = ports
            .iter()
            .map(|p| {
                copy(
                    &pebble,
                    storage.path(),
                    *p,
                    &[("THRUST_ACME_CHALLENGE", challenge)],
                )
            })
            .collect();
        let served = leaves(&ports, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{challenge}: {}", logs(&copies)));
        assert!(
            served.iter().all(|leaf| *leaf == served[0]),
            "{challenge}: every copy serves the one certificate"
        );
        assert_eq!(pebble.orders(), 1, "{challenge}: {}", logs(&copies));
        assert_eq!(pebble.accounts(), 1, "one account for the copies");
        let ordered: Vec<bool> = copies
            .iter()
            .map(|t| logged(t, "Certificate obtained"))
            .collect();
        assert_eq!(
            ordered.iter().filter(|o| **o).count(),
            1,
            "{challenge}: {}",
            logs(&copies)
        );
        // The balancer handed the CA's HTTP-01 requests to any copy, and
        // each answered.
        if challenge == "http-01" {
            let answered: Vec<_> = copies
                .iter()
                .flat_map(|t| t.log_lines())
                .filter(|l| {
                    l["msg"] == "Request"
                        && l["path"]
                            .as_str()
                            .is_some_and(|p| p.starts_with("/.well-known/acme-challenge/"))
                })
                .collect();
            assert!(!answered.is_empty(), "{}", logs(&copies));
            assert!(answered.iter().all(|l| l["status"] == 200), "{answered:?}");
        }
    }
}

#[test]
fn a_renewal_placed_by_one_copy_is_served_by_all() {
    let (storage, ports, balancer) = cluster(3);
    // Certificates valid 24 s: renewed 16 s after they are issued.
    let pebble = Pebble::start_short_lived(balancer.http, balancer.https, 24);
    let copies: Vec<Thrust> = ports
        .iter()
        .map(|p| copy(&pebble, storage.path(), *p, &[]))
        .collect();
    let first =
        leaves(&ports, Duration::from_secs(60)).unwrap_or_else(|| panic!("{}", logs(&copies)));
    assert!(first.iter().all(|leaf| *leaf == first[0]));
    assert!(
        wait_until(Duration::from_secs(40), || pebble.orders() >= 2),
        "{}",
        logs(&copies)
    );
    // Within a few seconds of the renewal every copy serves the new one.
    let mut renewed = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            renewed = ports.iter().map(|p| served_leaf(p.https)).collect();
            renewed
                .iter()
                .all(|leaf| *leaf == renewed[0] && *leaf != first[0])
        }),
        "{}",
        logs(&copies)
    );
    assert_eq!(
        pebble.orders(),
        2,
        "one order per renewal: {}",
        logs(&copies)
    );
}

#[test]
fn a_copy_killed_while_ordering_leaves_the_order_to_the_others_once_its_claim_expires() {
    let (storage, ports, balancer) = cluster(3);
    // Validations take up to 3 s: the first copy is still ordering when killed.
    let pebble = Pebble::start_slow_validations(balancer.http, balancer.https, 3);
    let claim_ttl = [("THRUST_ACME_CLAIM_TTL", "5")];
    let mut first = copy(&pebble, storage.path(), ports[0], &claim_ttl);
    assert!(
        first
            .wait_log(Duration::from_secs(20), |l| l["msg"]
                == "Certificate ordered")
            .is_some(),
        "{}",
        first.log_text()
    );
    first.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(first.wait_exit(Duration::from_secs(5)).is_some());
    assert!(
        storage.path().join("claims/app.test.claim").is_file(),
        "the dead copy's claim stays behind"
    );
    std::thread::sleep(Duration::from_millis(500));
    let orders_before = pebble.orders();
    let others: Vec<Thrust> = ports[1..]
        .iter()
        .map(|p| copy(&pebble, storage.path(), *p, &claim_ttl))
        .collect();
    let served =
        leaves(&ports[1..], Duration::from_secs(60)).unwrap_or_else(|| panic!("{}", logs(&others)));
    assert_eq!(served[0], served[1]);
    assert_eq!(pebble.orders(), orders_before + 1, "{}", logs(&others));
    assert!(
        others.iter().any(|t| logged(
            t,
            "An expired ACME claim was broken: the copy holding it stopped renewing it"
        )),
        "{}",
        logs(&others)
    );
}

#[test]
fn an_on_demand_name_asked_for_at_two_copies_at_once_is_ordered_once() {
    let (storage, ports, balancer) = cluster(2);
    let pebble = Pebble::start(balancer.http, balancer.https, None);
    let settings = [
        ("TLS_DOMAIN", ""),
        ("THRUST_ON_DEMAND_TLS_ASK", "/thrust/domains"),
        ("ALLOWED_DOMAINS", "shop.test"),
    ];
    let copies: Vec<Thrust> = ports
        .iter()
        .map(|p| copy(&pebble, storage.path(), *p, &settings))
        .collect();
    for t in &copies {
        t.wait_ready();
    }
    let root = pebble.issuing_root();
    let answers: Vec<Result<String, String>> = std::thread::scope(|scope| {
        ports
            .iter()
            .map(|p| {
                let root = &root;
                scope.spawn(move || https_get(p.https, root, "shop.test", "/"))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    for answer in &answers {
        assert_eq!(
            answer.as_deref(),
            Ok("hello from app\n"),
            "{}",
            logs(&copies)
        );
    }
    assert_eq!(pebble.orders(), 1, "{}", logs(&copies));
}
