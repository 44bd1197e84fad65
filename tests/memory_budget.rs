//! Memory has a budget (SPEC §11a): the default connection limit follows
//! the container's memory limit, copies of misses being stored share one
//! budget, and refused or metrics connections cannot pile up.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Descriptors `pid` holds open.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A memory cgroup of `mib` MiB (v2 where it is mounted alone, else v1);
/// removed when dropped.
struct MemoryCgroup {
    path: PathBuf,
}

impl MemoryCgroup {
    fn new(mib: u64) -> Option<MemoryCgroup> {
        let name = format!("thrust-test-{}-{mib}", std::process::id());
        let (path, limit) = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            (PathBuf::from("/sys/fs/cgroup").join(name), "memory.max")
        } else {
            (
                PathBuf::from("/sys/fs/cgroup/memory").join(name),
                "memory.limit_in_bytes",
            )
        };
        std::fs::create_dir_all(&path).ok()?;
        std::fs::write(path.join(limit), (mib << 20).to_string()).ok()?;
        Some(MemoryCgroup { path })
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[test]
#[ignore = "makes a memory cgroup, which needs root: scripts/test (and CI) run it"]
fn the_default_connection_limit_follows_the_containers_memory() {
    let cgroup = MemoryCgroup::new(256)
        .expect("making a memory cgroup (needs root and a cgroup file system)");
    let dir = tempfile::tempdir().unwrap();
    let (port, worker) = (free_port(), free_port());
    // thrust joins the cgroup before it starts, as in a container limited
    // to 256 MiB.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {THRUST} sleep 30",
        cgroup.path.display()
    );
    let mut thrust = Command::new("sh")
        .args(["-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HTTP_PORT", port.to_string())
        .env("TARGET_PORT", worker.to_string())
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = thrust.stdout.take().unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("Server started") && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = thrust.kill();
    let _ = thrust.wait();
    let started: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|l: &serde_json::Value| l["msg"] == "Server started")
        .unwrap_or_else(|| panic!("{text}"));
    // Half of 256 MiB, less the 64 MiB cache and 16 MiB of captures: half
    // of that at 4 KiB a connection (the other half for heads being read).
    assert_eq!(started["memory_limit_mib"], 256);
    assert_eq!(started["max_connections"], 6144);
}

/// Whether thrust has closed `s` (the end read, or a reset), looked at
/// without waiting.
fn closed_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let closed = match (&*s).read(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

#[test]
#[ignore = "makes a memory cgroup, which needs root: scripts/test (and CI) run it"]
fn heads_borrow_what_the_cache_leaves_and_give_it_back_as_it_fills() {
    let cgroup = MemoryCgroup::new(256)
        .expect("making a memory cgroup (needs root and a cgroup file system)");
    let metrics = free_port();
    // 256 MiB: thrust's 128 MiB, less a 480 MiB cache's 120 MiB of
    // captures, leaves heads their 1 MiB floor and 6.75 MiB of the cache's
    // share to borrow while the cache is empty.
    let options = Options::app()
        .env("CACHE_SIZE", (480u64 << 20).to_string())
        .env("MAX_CACHE_ITEM_SIZE", (1 << 20).to_string())
        .env("THRUST_MAX_CONNECTIONS", "400")
        .env("THRUST_METRICS_PORT", metrics.to_string());
    let t = Thrust::start_ready(Options {
        cgroup: Some(cgroup.path.clone()),
        ..options
    });
    // A 60 KiB head holds a 64 KiB buffer: 124 fit in 7.75 MiB, 16 in 1 MiB.
    let filler = "a".repeat(60 * 1024);
    let head = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: {filler}");
    let heads: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = connect(t.port);
            s.write_all(head.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(10));
            s
        })
        .collect();
    let kept = |heads: &[TcpStream]| heads.iter().filter(|s| !closed_now(s)).count();
    assert!(
        wait_until(Duration::from_secs(5), || kept(&heads) <= 124),
        "heads kept: {}",
        kept(&heads)
    );
    assert!(kept(&heads) >= 100, "heads kept: {}", kept(&heads));
    // The cache stores 10 MB: it takes its share back, the oldest heads go.
    drop(storable_misses(&t, 10, 1_000_000));
    assert!(
        wait_until(Duration::from_secs(10), || kept(&heads) <= 16),
        "heads kept with the cache full: {}",
        kept(&heads)
    );
    assert!(kept(&heads) >= 8, "heads kept: {}", kept(&heads));
    assert!(
        heads.iter().take(100).all(closed_now),
        "the oldest went first"
    );
    assert_eq!(get(t.port, "/").unwrap().status, 200);
    let shed = scrape(metrics)
        .get("thrust_shed_connections_total{reason=\"head_memory\"}")
        .copied()
        .unwrap_or(0.0);
    assert!(shed >= 130.0, "heads closed for memory counted: {shed}");
}

/// thrust with an 8 MiB cache in front of the test app.
fn small_cache() -> Thrust {
    Thrust::start_ready(
        Options::app()
            .env("CACHE_SIZE", (8 << 20).to_string())
            .env("MAX_CACHE_ITEM_SIZE", (1 << 20).to_string())
            .env("HTTP_WRITE_TIMEOUT", "60"),
    )
}

/// Asks for a different storable 1 MB page on each of `count` connections
/// and reads `read` bytes of each answer.
fn storable_misses(t: &Thrust, count: usize, read: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut s = connect(t.port);
            let head = format!(
                "GET /text?bytes=1000000&type=application/octet-stream&h_Cache_Control=public,max-age=60&n={i} HTTP/1.1\r\nHost: t\r\n\r\n"
            );
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|mut s| {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < read {
                match s.read(&mut buf[..(read - got).min(64 * 1024)]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            s
        })
        .collect()
}

fn grown_mib(t: &Thrust, before_kib: u64) -> f64 {
    let (now, _) = t.memory_kib();
    now.saturating_sub(before_kib) as f64 / 1024.0
}

#[test]
fn copies_of_misses_being_stored_share_one_budget() {
    // CACHE_SIZE 8 MiB: copies being captured may hold 2 MiB together.
    // 100 clients each read 900 kB of a different storable 1 MB page, then
    // stop reading: no answer completes, every copy waits.
    let t = small_cache();
    let (before, _) = t.memory_kib();
    let clients = storable_misses(&t, 100, 900_000);
    std::thread::sleep(Duration::from_millis(500));
    let grown = grown_mib(&t, before);
    drop(clients);
    // Without the shared budget each copy holds what its client read: 90 MB
    // on top of the connections' own buffers.
    assert!(
        grown < 50.0,
        "RSS grew {grown:.1} MiB with 100 copies waiting"
    );
}

#[test]
fn a_burst_of_stores_never_holds_much_more_than_cache_size() {
    // 120 storable 1 MB pages read whole, one after another in a burst, into
    // an 8 MiB cache: stored and evicted as they come, not held until the
    // cache's maintenance runs.
    let t = small_cache();
    let (before, _) = t.memory_kib();
    drop(storable_misses(&t, 120, 1_000_000));
    std::thread::sleep(Duration::from_millis(500));
    let grown = grown_mib(&t, before);
    assert!(
        grown < 50.0,
        "RSS grew {grown:.1} MiB storing 120 MB into an 8 MiB cache"
    );
}

#[test]
fn refused_connections_cannot_pile_up() {
    let t = Thrust::start_ready(Options::app().env("THRUST_MAX_CONNECTIONS", "1"));
    // The one place held by a request at the app: busy, never closed for room.
    let _held = {
        let mut s = connect(t.port);
        s.write_all(b"GET /hang?seconds=30 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        s
    };
    std::thread::sleep(Duration::from_millis(200));
    let baseline = open_fds(t.pid());
    // A flood of connections that send nothing and read nothing: thrust
    // answers some with 503, and closes the rest at once.
    let flood: Vec<TcpStream> = (0..1500)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", t.port)).ok())
        .collect();
    let mut most = 0;
    for _ in 0..10 {
        most = most.max(open_fds(t.pid()));
        std::thread::sleep(Duration::from_millis(30));
    }
    drop(flood);
    assert!(
        most < baseline + 400,
        "{most} descriptors open during the flood ({baseline} before)"
    );
    assert!(wait_until(Duration::from_secs(5), || get(t.port, "/up").is_ok()));
}

#[test]
fn the_metrics_port_holds_a_bounded_number_of_connections() {
    let metrics = free_port();
    let t = Thrust::start_ready(Options::app().env("THRUST_METRICS_PORT", metrics.to_string()));
    let baseline = open_fds(t.pid());
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", metrics)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(t.pid());
    assert!(
        during < baseline + 64,
        "{during} descriptors with 300 idle metrics connections ({baseline} before)"
    );
    drop(idle);
    assert!(wait_until(Duration::from_secs(5), || {
        request(metrics, "GET", "/metrics", &[], b"").is_ok_and(|r| r.status == 200)
    }));
}
