//! Test harness: runs the built `thrust` binary in front of a real child
//! process on free loopback ports, talks to it as a client would, and kills
//! everything it started when the test ends.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod pebble;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const THRUST: &str = env!("CARGO_BIN_EXE_thrust");

/// A TCP port nothing listens on right now. Ports come from a counter below
/// the kernel's ephemeral range, so two tests of one run never get the same
/// port and no outgoing connection can take it meanwhile. Test binaries run
/// side by side (scripts/test-binaries): a port one of them has handed out
/// may not be bound yet when another looks, so each port handed out is also
/// locked (`flock` on a file named after it, held until this process exits)
/// and a port another process holds is skipped.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HELD: std::sync::Mutex<Vec<nix::fcntl::Flock<std::fs::File>>> =
        std::sync::Mutex::new(Vec::new());
    let locks = std::env::temp_dir().join("thrust-test-ports");
    let _ = std::fs::create_dir_all(&locks);
    let base = (std::process::id() * 7919) % 20_000;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (10_000 + (base + offset) % 20_000) as u16;
        let Ok(file) = std::fs::File::create(locks.join(port.to_string())) else {
            continue;
        };
        let Ok(lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            continue;
        };
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            HELD.lock().unwrap().push(lock);
            return port;
        }
    }
}

pub fn app_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/app.py")
}

/// Polls `check` every 20 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

pub struct Thrust {
    pub child: Option<Child>,
    pub port: u16,
    pub worker_port: u16,
    pub dir: tempfile::TempDir,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub app_log: PathBuf,
}

pub struct Options<'a> {
    pub env: Vec<(&'a str, String)>,
    pub command: Vec<String>,
    /// Start thrust with this soft open-file limit (as a container might).
    pub soft_nofile: Option<u64>,
    /// Start thrust with this soft and hard open-file limit.
    pub nofile: Option<(u64, u64)>,
    /// Start thrust through `systemd-socket-activate`, which listens on
    /// these addresses and passes the sockets under these names.
    pub activation: Option<(Vec<String>, String)>,
    /// Start thrust in this cgroup (its directory), as in a container.
    pub cgroup: Option<PathBuf>,
}

impl<'a> Options<'a> {
    /// thrust in front of the Python test app.
    pub fn app() -> Self {
        Options::command(&["python3", &app_script().to_string_lossy()])
    }

    /// thrust in front of Debian's Puma running `rackup` (relative to the
    /// project) with the demo's Puma configuration.
    pub fn puma(rackup: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = root.join("demo/puma.rb");
        let app = root.join(rackup);
        Options::command(&[
            "puma",
            "-C",
            config.to_str().unwrap(),
            app.to_str().unwrap(),
        ])
    }

    pub fn command(command: &[&str]) -> Self {
        Options {
            env: Vec::new(),
            command: command.iter().map(|s| s.to_string()).collect(),
            soft_nofile: None,
            nofile: None,
            activation: None,
            cgroup: None,
        }
    }

    pub fn env(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.env.push((name, value.into()));
        self
    }

    /// HTTPS for app.test on a free port, with a self-signed certificate
    /// written to `dir`: the options, that port and the certificate.
    pub fn https_app_test(self, dir: &Path) -> (Self, u16, PathBuf) {
        let (cert, key) = self_signed_app_test(dir);
        let https = free_port();
        let options = self
            .env("SSL_CERT_PATH", cert.to_string_lossy())
            .env("SSL_KEY_PATH", key.to_string_lossy())
            .env("HTTPS_PORT", https.to_string());
        (options, https, cert)
    }
}

impl Thrust {
    /// Starts thrust on free ports with a clean environment of our choosing.
    ///
    /// A port found free can be taken by another process before thrust binds
    /// it; when that happens to the harness's own HTTP port, thrust is started
    /// again on new ports rather than failing a test that is not about ports.
    pub fn start(options: Options) -> Thrust {
        let own_port = options.activation.is_none()
            && !options.env.iter().any(|(name, _)| *name == "HTTP_PORT");
        let mut attempts = 0;
        loop {
            let mut thrust = Thrust::spawn(&options);
            attempts += 1;
            if !own_port || attempts == 5 || !thrust.lost_its_port_race() {
                return thrust;
            }
        }
    }

    /// Waits until thrust listens or exits; true when it exited because its
    /// HTTP port was taken.
    fn lost_its_port_race(&mut self) -> bool {
        let port = self.port;
        let mut exited = false;
        wait_until(Duration::from_secs(10), || {
            exited = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))));
            exited || TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        exited
            && std::fs::read_to_string(&self.stderr)
                .unwrap_or_default()
                .contains(&format!(
                    "cannot listen on port {port} (HTTP_PORT): Address already in use"
                ))
    }

    fn spawn(options: &Options) -> Thrust {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut worker_port = free_port();
        while worker_port == port {
            worker_port = free_port();
        }
        let stdout = dir.path().join("thrust.out");
        let stderr = dir.path().join("thrust.err");
        let app_log = dir.path().join("app.log");
        std::fs::write(&app_log, "").unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), std::env::var("HOME").unwrap_or_default()),
            ("HTTP_PORT".into(), port.to_string()),
            ("TARGET_PORT".into(), worker_port.to_string()),
            ("APP_LOG".into(), app_log.display().to_string()),
            (
                "BAD_GATEWAY_PAGE".into(),
                dir.path().join("502.html").display().to_string(),
            ),
        ];
        env.extend(options.env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let mut cmd = match &options.activation {
            None => Command::new(THRUST),
            Some((addresses, names)) => {
                // The launcher passes on only the variables it is given.
                let mut launcher = Command::new("systemd-socket-activate");
                for address in addresses {
                    launcher.args(["-l", address]);
                }
                launcher.arg(format!("--fdname={names}"));
                for (name, value) in &env {
                    launcher.arg(format!("-E{name}={value}"));
                }
                launcher.arg(THRUST);
                launcher
            }
        };
        cmd.args(&options.command)
            .env_clear()
            .envs(env)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0);
        let (_, hard_now) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let nofile = options
            .nofile
            .or(options.soft_nofile.map(|soft| (soft, hard_now)));
        if let Some((soft, hard)) = nofile {
            use nix::sys::resource::{setrlimit, Resource};
            // SAFETY: setrlimit(2) is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || Ok(setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?));
            }
        }
        if let Some(cgroup) = &options.cgroup {
            let procs = std::ffi::CString::new(
                cgroup
                    .join("cgroup.procs")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .unwrap();
            // SAFETY: open(2), write(2) and close(2) are async-signal-safe,
            // and the path was made before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // "0": the process writing, the child about to exec.
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if written == 1 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().expect("spawn thrust");
        Thrust {
            child: Some(child),
            port,
            worker_port,
            dir,
            stdout,
            stderr,
            app_log,
        }
    }

    /// Starts thrust and waits until /up answers 200.
    pub fn start_ready(options: Options) -> Thrust {
        let thrust = Thrust::start(options);
        thrust.wait_ready();
        thrust
    }

    pub fn wait_ready(&self) {
        let ok = wait_until(Duration::from_secs(15), || {
            get(self.port, "/up")
                .map(|r| r.status == 200)
                .unwrap_or(false)
        });
        assert!(ok, "thrust never became ready; log:\n{}", self.log_text());
    }

    /// Waits until thrust accepts connections (it binds before the app starts).
    pub fn wait_listening(&self) {
        let ok = wait_until(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(ok, "thrust never listened; log:\n{}", self.log_text());
    }

    /// Resident and peak memory of thrust, in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        send_signal(self.pid(), sig);
    }

    /// Waits for thrust to exit (bounded); returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        format!(
            "{}\n--- stderr ---\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// thrust's JSON log lines.
    pub fn log_lines(&self) -> Vec<Value> {
        json_lines(&self.stdout)
    }

    /// Waits until a log line satisfies `check`.
    pub fn wait_log(&self, limit: Duration, check: impl Fn(&Value) -> bool) -> Option<Value> {
        let mut found = None;
        wait_until(limit, || {
            found = self.log_lines().into_iter().find(|l| check(l));
            found.is_some()
        });
        found
    }

    /// What the app recorded: one entry per fully received request or event.
    pub fn app_entries(&self) -> Vec<Value> {
        json_lines(&self.app_log)
    }

    pub fn app_requests(&self, path: &str) -> Vec<Value> {
        self.app_entries()
            .into_iter()
            .filter(|e| e["path"] == path && e.get("method").is_some())
            .collect()
    }

    /// The pid of the child from thrust's "Child started" line.
    pub fn child_pid(&self) -> Option<i32> {
        self.log_lines()
            .iter()
            .find(|l| l["msg"] == "Child started")
            .and_then(|l| l["pid"].as_i64())
            .map(|p| p as i32)
    }
}

impl Drop for Thrust {
    fn drop(&mut self) {
        // A failing test shows what thrust said, so a CI failure explains itself.
        if std::thread::panicking() {
            eprintln!("--- thrust's log ---\n{}", self.log_text());
        }
        let child_pid = self.child_pid();
        if let Some(mut child) = self.child.take() {
            send_signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The app server runs in its own process group; make sure it is gone.
        if let Some(pid) = child_pid {
            send_signal(-pid, nix::sys::signal::Signal::SIGKILL);
            send_signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Sends `sig` to `pid` (a negative pid names a process group); ignores "no such process".
pub fn send_signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Sends raw bytes and reads one response.
pub fn raw(port: u16, request: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(request)?;
    read_response(&mut BufReader::new(stream), false)
}

pub fn get(port: u16, target: &str) -> std::io::Result<Response> {
    request(port, "GET", target, &[], b"")
}

pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: test.local\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(&bytes)?;
    read_response(&mut BufReader::new(stream), method == "HEAD")
}

/// Reads one response (Content-Length, chunked, or until close).
pub fn read_response<R: BufRead>(reader: &mut R, head_only: bool) -> std::io::Result<Response> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 || status == 101 || (100..200).contains(&status)
    {
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if size == 0 {
                line.clear();
                reader.read_line(&mut line)?;
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reads an event stream to its end, noting when each `data:` line arrived.
pub fn event_arrivals(port: u16, host: &str, target: &str) -> Vec<Instant> {
    let mut stream = connect(port);
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        let events = String::from_utf8_lossy(&buf[..n]).matches("data: ").count();
        arrivals.extend(std::iter::repeat_n(Instant::now(), events));
    }
    arrivals
}

/// (headers, decoded body) of a curl request that decodes any encoding.
pub fn curl(port: u16, target: &str, headers: &[&str]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let url = format!("http://127.0.0.1:{port}{target}");
    let mut args = vec![
        "-s",
        "--compressed",
        "-D",
        head.to_str().unwrap(),
        "--max-time",
        "10",
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&url);
    let out = run_tool("curl", &args);
    (
        std::fs::read_to_string(&head).unwrap().to_ascii_lowercase(),
        out.stdout,
    )
}

/// GETs `target` with `Connection: close` and counts every byte that comes
/// back (head included), reading in 1 MiB chunks so nothing is kept.
pub fn bytes_received(port: u16, target: &str) -> u64 {
    let mut stream = connect(port);
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut received = 0u64;
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            return received;
        }
        received += n as u64;
    }
}

/// Runs a command line tool to completion (bounded by the tool's own flags).
pub fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is required for this test ({e}); run scripts/test to install it")
        })
}

/// GETs `target` over TLS from `host` (resolved to 127.0.0.1:`port`),
/// trusting `ca`; the body, or curl's error. Bounded at 40 s: an ACME
/// handshake may wait for its certificate.
pub fn https_get(port: u16, ca: &Path, host: &str, target: &str) -> Result<String, String> {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{target}");
    let out = run_tool(
        "curl",
        &[
            "-s",
            "-S",
            "--max-time",
            "40",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// thrust's /metrics on `port`, read by the Prometheus Python client's
/// parser: each sample, as `name{label="value",...}` (labels sorted), to its value.
pub fn scrape(port: u16) -> std::collections::HashMap<String, f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/scrape.py");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = run_tool("/usr/bin/python3", &[script, &url]);
    assert!(
        out.status.success(),
        "scraping {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A self-signed certificate for `app.test`, as PEM files in `dir`:
/// (certificate, key).
pub fn self_signed_app_test(dir: &Path) -> (PathBuf, PathBuf) {
    let generated = rcgen::generate_simple_self_signed(vec!["app.test".to_string()]).unwrap();
    let (cert, key) = (dir.join("app-test.crt"), dir.join("app-test.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Runs the HTTP/3 client for `target` on `host` at 127.0.0.1:`port`,
/// trusting `ca`: whether it succeeded, its answers (one JSON object per
/// request) and what it printed on stderr.
pub fn h3_client(
    port: u16,
    ca: &Path,
    host: &str,
    target: &str,
    args: &[&str],
) -> (bool, Vec<Value>, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/tools/aioquic/bin/python");
    let url = format!("https://{host}:{port}{target}");
    let out = Command::new(&python)
        .arg(root.join("tests/apps/h3_client.py"))
        .args(["--connect", "127.0.0.1", "--ca", ca.to_str().unwrap()])
        .args(args)
        .arg(&url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} is required ({e}): run scripts/install-deps",
                python.display()
            )
        });
    let answers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), answers, stderr)
}

/// Established TCP connections to `port` on 127.0.0.1 (as their clients
/// see them), from /proc/net/tcp.
pub fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// `count` connections to `t`, each with `request` (for `path`) arrived at
/// the app and still in flight: busy ones. A connection refused while the
/// start-up check's still held its place (503, or closed) is replaced by a
/// new one; one that is not refused is waited for however slow the app is
/// to see it, so that no request left behind reaches the app later.
pub fn busy_connections(t: &Thrust, count: usize, request: &[u8], path: &str) -> Vec<TcpStream> {
    let mut busy = Vec::new();
    while busy.len() < count {
        let mut s = connect(t.port);
        s.write_all(request).unwrap();
        let n = busy.len() + 1;
        let arrived = || t.app_requests(path).len() >= n;
        // A busy connection hears nothing until the app answers.
        let answered = |s: &TcpStream| {
            s.set_nonblocking(true).unwrap();
            let peeked = s.peek(&mut [0u8; 1]);
            s.set_nonblocking(false).unwrap();
            peeked.is_ok()
        };
        wait_until(Duration::from_secs(10), || arrived() || answered(&s));
        if arrived() {
            busy.push(s);
        }
    }
    busy
}
