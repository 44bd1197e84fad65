//! How much memory thrust lets itself use, and the default connection
//! limit that follows: slow or hostile clients must not push a container
//! past its memory limit (the kernel would kill the app with thrust).
//!
//! The memory thrust may use is half of the container's limit (cgroup v2
//! `memory.max` or v1 `memory.limit_in_bytes`, the lowest along the
//! cgroup's path; the machine's memory when there is none): the other half
//! is the app's. From it come the cache (CACHE_SIZE), the responses being
//! captured for it (`capture_budget`), the compression dictionaries when
//! they are on (`dictionary_budget`), and the rest goes to connections:
//! half to the connections themselves (`CONNECTION` each: the default
//! limit), half to the request heads being read, which share it. What the
//! cache does not hold of its share, heads may borrow until the cache
//! needs it back (`ConnectionBudget::cache_lendable`).

use std::path::{Path, PathBuf};

/// What an open connection holds of its own: its task (under 1 KiB plain,
/// 2 KiB over TLS), its state, timers and seat in the crowd. A head
/// being read is counted apart, in `head_bytes` (its first buffer is
/// 2 KiB: benches/head_flood.py measures 4.4 KiB per connection waiting
/// on a small head; benches/idle_memory.py 2.7 KiB per parked one,
/// holding no head). A request in flight adds hyper's 16 KiB of buffers.
pub const CONNECTION: u64 = 4 << 10;

/// What TLS adds to a connection: rustls' session and its buffers
/// (`ALPN=http/1.1 python3 benches/idle_tls_memory.py`: 10.8–11.4 KiB an
/// idle HTTP/1.1 connection over TLS).
pub const TLS_SESSION: u64 = 8 << 10;

/// What HTTP/2 adds to a connection: the h2 crate's buffers and HPACK
/// tables (`ALPN=h2 python3 benches/idle_tls_memory.py`: 43 KiB an idle
/// HTTP/2 connection over TLS, 32 more than HTTP/1.1).
pub const HTTP2_STATE: u64 = 32 << 10;

/// What an HTTP/3 connection holds waiting, all told: quinn's connection
/// (its TLS, streams and buffers) and h3's (`ALPN=h3
/// target/tools/aioquic/bin/python benches/idle_tls_memory.py`: 64.9 KiB
/// an idle one).
pub const HTTP3_CONNECTION: u64 = 64 << 10;

/// The default never goes below this, however small the container: a
/// front that takes a handful of connections is down, not safe.
const MIN_CONNECTIONS: u64 = 64;

/// Share of CACHE_SIZE that responses being captured for the cache may hold
/// at once (a quarter: 16 MiB with the default 64 MiB).
pub fn capture_budget(cache_size: u64) -> u64 {
    cache_size / 4
}

/// What compression dictionaries and their deltas may hold
/// (THRUST_COMPRESSION_DICTIONARIES): a quarter of CACHE_SIZE, on top of it.
pub fn dictionary_budget(cache_size: u64) -> u64 {
    cache_size / 4
}

/// What the memory left for connections is split into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The default THRUST_MAX_CONNECTIONS: `connection_bytes` of plain
    /// connections.
    pub connections: u64,
    /// Bytes the connections may weigh at once, each by its kind
    /// (`CONNECTION`, with `TLS_SESSION` and `HTTP2_STATE` on top;
    /// `HTTP3_CONNECTION`).
    pub connection_bytes: u64,
    /// Bytes all request heads being read may hold at once.
    pub head_bytes: u64,
    /// Bytes of the cache's share, within the memory thrust may use, that
    /// heads may borrow while the cache does not hold them (a cache larger
    /// than that memory lends only what lies within it).
    pub cache_lendable: u64,
}

/// What half the memory limit leaves for connections after the cache, its
/// captures and (`dictionaries` on) the dictionaries, split in two: half for the connections themselves, each
/// weighing what its kind holds (as many as that makes at `CONNECTION`
/// each, no more than half the open-file limit, is the default limit), half
/// for the heads being read; and what of the cache's share heads may
/// borrow.
pub fn connection_budget(
    memory_limit: u64,
    cache_size: u64,
    dictionaries: bool,
    fd_limit: Option<u64>,
) -> ConnectionBudget {
    let dictionaries = if dictionaries {
        dictionary_budget(cache_size)
    } else {
        0
    };
    let for_connections = (memory_limit / 2)
        .saturating_sub(cache_size)
        .saturating_sub(capture_budget(cache_size))
        .saturating_sub(dictionaries);
    let head_bytes = (for_connections / 2).max(MIN_CONNECTIONS * MIN_HEAD_BYTES);
    let connection_bytes = (for_connections / 2).max(MIN_CONNECTIONS * CONNECTION);
    let by_memory = connection_bytes / CONNECTION;
    let by_files = fd_limit.map_or(u64::MAX, |fds| (fds / 2).max(1));
    let cache_lendable = (memory_limit / 2)
        .saturating_sub(capture_budget(cache_size) + dictionaries)
        .saturating_sub(connection_bytes + head_bytes)
        .min(cache_size);
    ConnectionBudget {
        connections: by_memory.min(by_files),
        connection_bytes,
        head_bytes,
        cache_lendable,
    }
}

/// However small the budget, this much head per connection at the floor: a
/// few cookies' worth.
const MIN_HEAD_BYTES: u64 = 16 << 10;

/// The memory limit thrust runs under: its cgroup's, or the machine's.
pub fn memory_limit() -> u64 {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let machine = machine_memory().unwrap_or(u64::MAX);
    cgroup_limit(&cgroups, Path::new("/sys/fs/cgroup")).map_or(machine, |l| l.min(machine))
}

/// The lowest memory limit along this process's cgroup path, from
/// `/proc/self/cgroup` (`0::/path` for v2, `N:memory:/path` for v1) and the
/// cgroup file system mounted at `root`.
fn cgroup_limit(proc_cgroup: &str, root: &Path) -> Option<u64> {
    let mut lowest: Option<u64> = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (base, file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        for dir in ancestors(&base, path) {
            if let Some(limit) = read_limit(&dir.join(file)) {
                lowest = Some(lowest.map_or(limit, |l| l.min(limit)));
            }
        }
    }
    lowest
}

/// `base/path` and each parent of it down to `base` (inside a container's
/// cgroup namespace the path is `/`, and `base` itself holds the limit).
fn ancestors(base: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = vec![base.to_path_buf()];
    let mut dir = base.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != "..") {
        dir.push(part);
        dirs.push(dir.clone());
    }
    dirs
}

/// A limit file's value; None for "max", v1's "unlimited" (a number near
/// 2^63) or an unreadable file.
fn read_limit(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let limit: u64 = text.trim().parse().ok()?;
    (limit < 1 << 62).then_some(limit)
}

fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn connections_and_heads_share_what_half_the_memory_leaves_after_the_cache() {
        let budget = |memory, fds| connection_budget(memory, 64 * MIB, false, fds);
        // 256 MiB: 128 for thrust, 64 cache, 16 captures: 48 MiB, half of it
        // for connections at 4 KiB, half for heads, which may borrow the
        // whole cache while it is empty.
        let expected = ConnectionBudget {
            connections: 6144,
            connection_bytes: 24 * MIB,
            head_bytes: 24 * MIB,
            cache_lendable: 64 * MIB,
        };
        assert_eq!(budget(256 * MIB, Some(1 << 20)), expected);
        assert_eq!(budget(1024 * MIB, Some(1 << 20)).connections, 55296);
        // The file limit still bounds it, and a tiny container gets the floor.
        assert_eq!(budget(1024 * MIB, Some(1000)).connections, 500);
        // 64 MiB: the cache is past thrust's 32; heads get their floor and
        // may borrow what of the cache lies within the 32 (after captures).
        let floor = ConnectionBudget {
            connections: 64,
            connection_bytes: 256 << 10,
            head_bytes: MIB,
            cache_lendable: 32 * MIB - 16 * MIB - MIB - (256 << 10),
        };
        assert_eq!(budget(64 * MIB, None), floor);
        // A cache whose captures alone pass that memory lends nothing.
        assert_eq!(
            connection_budget(16 << 30, MIB << 20, false, None).cache_lendable,
            0
        );
        // Dictionaries on: their 16 MiB come off what connections get.
        let with_dictionaries = connection_budget(256 * MIB, 64 * MIB, true, Some(1 << 20));
        assert_eq!(with_dictionaries.connections, 4096);
        assert_eq!(with_dictionaries.head_bytes, 16 * MIB);
        assert_eq!(with_dictionaries.cache_lendable, 64 * MIB);
    }

    #[test]
    fn the_lowest_limit_along_the_cgroup_path_counts() {
        let root = tempfile::tempdir().unwrap();
        let write = |dir: &str, file: &str, value: &str| {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), value).unwrap();
        };
        // v2: the container's own cgroup is limited, its parent not.
        write("", "memory.max", "max\n");
        write("app", "memory.max", "268435456\n");
        assert_eq!(cgroup_limit("0::/app\n", root.path()), Some(256 * MIB));
        assert_eq!(cgroup_limit("0::/\n", root.path()), None);
        // v1: a parent's limit is lower; "unlimited" is a huge number.
        write("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        write("memory/pod", "memory.limit_in_bytes", "134217728\n");
        write("memory/pod/box", "memory.limit_in_bytes", "268435456\n");
        let v1 = "4:memory:/pod/box\n3:cpu,cpuacct:/pod/box\n";
        assert_eq!(cgroup_limit(v1, root.path()), Some(128 * MIB));
        assert_eq!(cgroup_limit("2:cpu:/x\n", root.path()), None);
    }
}
