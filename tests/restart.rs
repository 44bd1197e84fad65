//! Restarting the app under thrust, with Debian's Puma as the app server
//! (and the Python test app where an app's own habits matter):
//! THRUST_RESTART=on-failure after crashes, and `thrust restart`, which
//! replaces the running copy without failing a request.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn restartable_puma() -> Options<'static> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Options::command(&[
        "puma",
        "-C",
        root.join("demo/puma.rb").to_str().unwrap(),
        root.join("tests/apps/restartable.ru").to_str().unwrap(),
    ])
}

/// The pid of the app copy that answers `target`, or the status when not 200.
fn answered_by(t: &Thrust, target: &str) -> Result<i32, u16> {
    match request(t.port, "GET", target, &[("Host", "localhost")], b"") {
        Ok(r) if r.status == 200 => Ok(r.text().trim().parse().unwrap()),
        Ok(r) => Err(r.status),
        Err(_) => Err(0),
    }
}

fn thrust_restart(t: &Thrust) -> Output {
    thrust_restart_on(t.port)
}

/// `thrust restart` for whatever thrust serves `http_port`.
fn thrust_restart_on(http_port: u16) -> Output {
    Command::new(THRUST)
        .arg("restart")
        .env_clear()
        .env("HTTP_PORT", http_port.to_string())
        .output()
        .unwrap()
}

fn is_running(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn count_log(t: &Thrust, msg: &str) -> usize {
    t.log_lines().iter().filter(|l| l["msg"] == msg).count()
}

#[test]
fn on_failure_a_crashed_app_is_started_again_until_the_limit() {
    let metrics_port = free_port();
    let mut t = Thrust::start(
        restartable_puma()
            .env("THRUST_METRICS_PORT", metrics_port.to_string())
            .env("THRUST_RESTART", "on-failure")
            .env("THRUST_RESTART_LIMIT", "3")
            .env("THRUST_RESTART_WINDOW", "120")
            .env("THRUST_BOOT_WAIT", "15"),
    );
    t.wait_ready();
    let mut pid = answered_by(&t, "/pid").unwrap();
    for failure in 1..=2 {
        // The crashing request itself gets the bad gateway answer.
        assert_eq!(answered_by(&t, "/crash"), Err(502));
        assert!(
            wait_until(Duration::from_secs(5), || count_log(
                &t,
                "Child failed: starting it again (THRUST_RESTART=on-failure)"
            ) == failure),
            "{}",
            t.log_text()
        );
        // A request while the app is down waits for the new copy.
        let next = answered_by(&t, "/pid").expect("held until the app is back");
        assert_ne!(next, pid);
        assert!(!is_running(pid));
        pid = next;
        let up = get(t.port, "/up").unwrap();
        assert_eq!(up.status, 200);
    }
    let line = t
        .log_lines()
        .into_iter()
        .find(|l| l["msg"] == "Child failed: starting it again (THRUST_RESTART=on-failure)")
        .unwrap();
    assert_eq!(line["status"], "exit code 3");
    assert_eq!(line["restart_in_ms"], 100);
    let samples = scrape(metrics_port);
    assert_eq!(
        samples["thrust_app_restarts_total{reason=\"failure\"}"],
        2.0
    );
    assert_eq!(samples["thrust_app_state{state=\"ready\"}"], 1.0);

    // The third failure within the window is the limit: thrust gives up
    // and exits with the app's status.
    assert_eq!(answered_by(&t, "/crash"), Err(502));
    let status = t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code());
    assert_eq!(status, Some(3), "{}", t.log_text());
    assert!(t.log_lines().iter().any(|l| l["msg"]
        == "Child failed 3 times within THRUST_RESTART_WINDOW: giving up"
        && l["failures"] == 3));
}

#[test]
fn without_on_failure_a_crash_stops_thrust_with_the_apps_status() {
    let mut t = Thrust::start(restartable_puma());
    t.wait_ready();
    assert_eq!(answered_by(&t, "/crash"), Err(502));
    let status = t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code());
    assert_eq!(status, Some(3), "{}", t.log_text());
}

#[test]
fn thrust_restart_replaces_the_app_without_failing_a_request() {
    let metrics_port = free_port();
    let t = Thrust::start(restartable_puma().env("THRUST_METRICS_PORT", metrics_port.to_string()));
    t.wait_ready();
    let old = answered_by(&t, "/pid").unwrap();

    // Clients keep asking throughout; one request is in flight on the old
    // copy when the new one takes over.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let port = t.port;
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (stop, answered) = (stop.clone(), answered.clone());
            // One client is the load balancer's health check.
            let path = if client == 0 { "/up" } else { "/pid" };
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match request(port, "GET", path, &[("Host", "localhost")], b"") {
                        Ok(r) if r.status == 200 => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.push(format!("status {}", r.status)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    let started = t.dir.path().join("slow-started");
    let slow_target = format!("/slow?s=2&started={}", started.display());
    let slow = std::thread::spawn(move || {
        request(port, "GET", &slow_target, &[("Host", "localhost")], b"")
            .map(|r| (r.status, r.text()))
    });
    assert!(
        wait_until(Duration::from_secs(10), || started.exists()),
        "the slow request never reached the app"
    );

    let restart = thrust_restart(&t);
    let said = String::from_utf8_lossy(&restart.stdout);
    assert!(
        restart.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    assert!(said.contains("waiting until it is ready"), "{said}");
    assert!(said.contains("takes new requests"), "{said}");

    let new = answered_by(&t, "/pid").unwrap();
    assert_ne!(new, old);
    // The slow request finishes on the old copy, which then stops.
    let (status, text) = slow.join().unwrap().unwrap();
    assert_eq!((status, text.trim()), (200, old.to_string().as_str()));
    assert!(wait_until(Duration::from_secs(10), || !is_running(old)));
    // Written by thrust's log thread once it has reaped the old copy.
    assert!(t
        .wait_log(Duration::from_secs(10), |l| {
            l["msg"] == "Previous copy of the app exited" && l["pid"] == old
        })
        .is_some());

    // The clients go on a little on the new copy alone.
    let so_far = answered.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(10), || {
        answered.load(Ordering::Relaxed) >= so_far + 8
    });
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(failures.is_empty(), "{failures:?}\n{}", t.log_text());
    assert!(answered.load(Ordering::Relaxed) > 20);
    // The new copy got its own port; thrust stays up and healthy.
    assert_eq!(get(t.port, "/up").unwrap().status, 200);
    let samples = scrape(metrics_port);
    assert_eq!(
        samples["thrust_app_restarts_total{reason=\"command\"}"],
        1.0
    );
    assert_eq!(samples["thrust_bad_gateway_responses_total{}"], 0.0);
}

#[test]
fn a_new_copy_that_fails_to_boot_leaves_the_old_one_serving() {
    let t = Thrust::start(restartable_puma().env("APP_FAIL_BOOT_IF", "broken-deploy"));
    t.wait_ready();
    let old = answered_by(&t, "/pid").unwrap();
    // Relative to thrust's working directory, the test's own directory.
    std::fs::write(t.dir.path().join("broken-deploy"), "").unwrap();

    let restart = thrust_restart(&t);
    assert_eq!(restart.status.code(), Some(1));
    let said = String::from_utf8_lossy(&restart.stderr);
    assert!(
        said.contains("the new copy exited before it was ready")
            && said.contains("the running copy keeps serving"),
        "{said}"
    );
    assert_eq!(answered_by(&t, "/pid"), Ok(old));
    assert!(t
        .wait_log(Duration::from_secs(10), |l| l["msg"]
            == "Restart failed: the new copy of the app exited before it was ready; the running copy keeps serving")
        .is_some());

    // Once the deploy is fixed, the next restart goes through.
    std::fs::remove_file(t.dir.path().join("broken-deploy")).unwrap();
    assert!(thrust_restart(&t).status.success());
    assert_ne!(answered_by(&t, "/pid").unwrap(), old);
}

#[test]
fn with_a_worker_socket_each_copy_gets_its_own_and_stopped_copies_leave_none_behind() {
    // The Python test app, which (unlike Puma) leaves its socket file behind.
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("app.sock");
    let t =
        Thrust::start_ready(Options::app().env("THRUST_WORKER_SOCKET", socket.to_string_lossy()));
    for round in 1..=2 {
        let restart = thrust_restart(&t);
        assert!(
            restart.status.success(),
            "{}",
            String::from_utf8_lossy(&restart.stderr)
        );
        assert!(
            String::from_utf8_lossy(&restart.stdout).contains(&format!("app.sock.{round}")),
            "{}",
            String::from_utf8_lossy(&restart.stdout)
        );
        assert_eq!(get(t.port, "/echo").unwrap().status, 200);
        assert!(wait_until(Duration::from_secs(10), || count_log(
            &t,
            "Previous copy of the app exited"
        ) == round));
    }
    let mut left: Vec<String> = std::fs::read_dir(sockets.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["app.sock.2"]);
}

#[test]
fn a_stop_signal_during_a_restart_stops_both_copies_and_tells_the_command() {
    let mut t = Thrust::start_ready(Options::app().env("APP_BOOT_DELAY", "2"));
    let port = t.port;
    let restart = std::thread::spawn(move || thrust_restart_on(port));
    let started = t
        .wait_log(Duration::from_secs(10), |l| {
            l["msg"] == "Restart: new copy of the app started"
        })
        .expect("the new copy started");
    t.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        t.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    let restart = restart.join().unwrap();
    assert_eq!(restart.status.code(), Some(1));
    let said = String::from_utf8_lossy(&restart.stderr);
    assert!(said.contains("thrust is stopping"), "{said}");
    let new_pid = started["pid"].as_i64().unwrap() as i32;
    assert!(wait_until(Duration::from_secs(5), || !is_running(new_pid)));
    assert_eq!(count_log(&t, "Restart abandoned: thrust is stopping"), 1);
}

#[test]
fn thrust_restart_without_a_running_thrust_says_so() {
    let restart = thrust_restart_on(free_port());
    assert_eq!(restart.status.code(), Some(1));
    let said = String::from_utf8_lossy(&restart.stderr);
    assert!(said.contains("no thrust serving HTTP_PORT="), "{said}");
}

#[test]
fn a_crash_loop_backs_off_and_a_stop_signal_ends_it_at_once() {
    let mut t = Thrust::start(
        Options::command(&["sh", "-c", "exit 4"])
            .env("THRUST_RESTART", "on-failure")
            .env("THRUST_RESTART_LIMIT", "100"),
    );
    let failed = "Child failed: starting it again (THRUST_RESTART=on-failure)";
    assert!(wait_until(Duration::from_secs(10), || count_log(
        &t, failed
    ) >= 5));
    let pauses: Vec<u64> = t
        .log_lines()
        .iter()
        .filter(|l| l["msg"] == failed)
        .map(|l| l["restart_in_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(pauses[..5], [100, 200, 400, 800, 1600]);
    // Down between attempts: the health check says so.
    let up = get(t.port, "/up").unwrap();
    assert_eq!((up.status, up.text().as_str()), (503, "starting"));
    t.signal(nix::sys::signal::Signal::SIGTERM);
    let status = t.wait_exit(Duration::from_secs(2)).and_then(|s| s.code());
    assert_eq!(status, Some(4), "{}", t.log_text());
}

#[test]
#[ignore = "runs a command as another user, which needs root: scripts/test (and CI) run it"]
fn thrust_restart_from_another_user_is_refused() {
    needs_root("run a command as another user");
    let t = Thrust::start(Options::app());
    t.wait_ready();
    let old = t.child_pid();
    // Thrust runs as root here; `nobody` may not control it.
    let restart = as_nobody(THRUST)
        .arg("restart")
        .env_clear()
        .env("HTTP_PORT", t.port.to_string())
        .output()
        .unwrap();
    assert_eq!(restart.status.code(), Some(1));
    let said = String::from_utf8_lossy(&restart.stderr);
    assert!(
        said.contains("only the user thrust runs as, or root"),
        "{said}"
    );
    assert_eq!(t.child_pid(), old);
    assert!(t
        .wait_log(Duration::from_secs(10), |l| l["msg"]
            == "Control socket: refused a command from another user"
            && l["uid"] == 65534)
        .is_some());
}

/// Fails the test, saying why, when it is not run as root.
fn needs_root(to: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to {to}"
    );
}

/// A command run as `nobody`.
fn as_nobody(program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
    command
}

/// A process that takes thrust's abstract control socket name for
/// `http_port` first and answers every caller with a lie; returns once it
/// listens.
fn impostor(mut command: Command, http_port: u16) -> std::process::Child {
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.bind('\\0thrust-control-{http_port}')\n\
         s.listen()\n\
         print('listening', flush=True)\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   try:\n\
         \x20       if sys.argv[1] == 'lie': c.sendall(b'done fake restart\\n')\n\
         \x20       else: c.recv(64)\n\
         \x20   except OSError: pass\n"
    );
    let mode = if command.get_program() == "setpriv" {
        "lie"
    } else {
        "stall"
    };
    let mut child = command
        .args(["-c", &script, mode])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "listening");
    child
}

#[test]
#[ignore = "runs a command as another user, which needs root: scripts/test (and CI) run it"]
fn a_control_socket_taken_by_another_user_is_reported_and_never_talked_to() {
    needs_root("run a command as another user");
    let port = free_port();
    let mut fake = impostor(as_nobody("/usr/bin/python3"), port);
    let t = Thrust::start(Options::app().env("HTTP_PORT", port.to_string()));
    assert!(wait_until(Duration::from_secs(10), || get(port, "/up")
        .is_ok_and(|r| r.status == 200)));
    let warning = t
        .wait_log(Duration::from_secs(5), |l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("thrust restart is unavailable"))
        })
        .unwrap_or_else(|| panic!("no warning: {}", t.log_text()));
    assert!(
        warning["error"]
            .as_str()
            .unwrap()
            .contains("held by uid 65534"),
        "{warning}"
    );
    let old = t.child_pid();
    let restart = thrust_restart_on(port);
    fake.kill().unwrap();
    fake.wait().unwrap();
    assert_eq!(restart.status.code(), Some(1));
    let said = String::from_utf8_lossy(&restart.stderr);
    assert!(
        said.contains("held by uid 65534") && said.contains("not talking to it"),
        "{said}"
    );
    assert!(!String::from_utf8_lossy(&restart.stdout).contains("fake"));
    assert_eq!(t.child_pid(), old);
}

#[test]
#[ignore = "runs a command as another user, which needs root: scripts/test (and CI) run it"]
fn another_users_connection_is_refused_before_it_sends_anything() {
    needs_root("run a command as another user");
    let t = Thrust::start_ready(Options::app());
    // Connects as nobody and only reads: the refusal comes at once.
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.connect('\\0thrust-control-{}')\n\
         s.settimeout(3)\n\
         print(s.recv(200).decode(), end='')\n",
        t.port
    );
    let out = as_nobody("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("failed only the user thrust runs as, or root"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn thrust_restart_gives_up_on_a_socket_that_never_answers() {
    // Something of our own user's holds the name and never says a word.
    let port = free_port();
    let mut stall = impostor(Command::new("python3"), port);
    let mut restart = Command::new(THRUST)
        .arg("restart")
        .env_clear()
        .env("HTTP_PORT", port.to_string())
        .env("THRUST_RESTART_BOOT_TIMEOUT", "1")
        .env("THRUST_SHUTDOWN_TIMEOUT", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_until(Duration::from_secs(30), || {
        restart.try_wait().is_ok_and(|s| s.is_some())
    });
    if !ended {
        restart.kill().unwrap();
    }
    stall.kill().unwrap();
    stall.wait().unwrap();
    let out = restart.wait_with_output().unwrap();
    assert!(ended, "thrust restart waited for ever");
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("said nothing for 8 s"), "{said}");
}

#[test]
fn a_control_socket_file_is_private_and_a_stale_one_is_replaced() {
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("control.sock");
    // A socket file left by a thrust that is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let t = Thrust::start_ready(
        Options::app().env("THRUST_CONTROL_SOCKET", path.display().to_string()),
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let restart = Command::new(THRUST)
        .arg("restart")
        .env_clear()
        .env("THRUST_CONTROL_SOCKET", path.display().to_string())
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    assert!(wait_until(Duration::from_secs(10), || count_log(
        &t,
        "Previous copy of the app exited"
    ) == 1));
}

#[test]
fn socket_activated_instances_name_their_control_socket_after_the_port_they_serve() {
    let passed: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let instances: Vec<Thrust> = passed
        .iter()
        .map(|port| {
            // Both read the same HTTP_PORT, as two instances of one unit would.
            let mut options = Options::app().env("HTTP_PORT", "8");
            options.activation = Some((vec![format!("127.0.0.1:{port}")], "http".into()));
            Thrust::start(options)
        })
        .collect();
    for (t, port) in instances.iter().zip(&passed) {
        assert!(wait_until(Duration::from_secs(10), || get(*port, "/up")
            .is_ok_and(|r| r.status == 200)));
        let open = t
            .wait_log(Duration::from_secs(5), |l| {
                l["msg"] == "Control socket open for thrust restart"
            })
            .unwrap_or_else(|| panic!("{}", t.log_text()));
        assert_eq!(open["socket"], format!("@thrust-control-{port}"));
    }
    let restart = thrust_restart_on(passed[1]);
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    assert!(wait_until(Duration::from_secs(10), || count_log(
        &instances[1],
        "Previous copy of the app exited"
    ) == 1));
    assert_eq!(
        count_log(&instances[0], "Previous copy of the app exited"),
        0
    );
}
