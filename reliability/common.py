"""What the reliability scripts share: the built thrust in front of the demo
app (Debian's Puma and Rack, as in the end-to-end tests), free ports,
clients that report exactly what they got, and process readings."""
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# THRUST_BINARY: a thrust already built, run as it is (scripts/test passes
# its release build, while the packaging checks may be building in target/).
THRUST = os.environ.get("THRUST_BINARY") or os.path.join(ROOT, "target/release/thrust")
DEMO = os.path.join(ROOT, "demo")
ASSET = "/assets/application-8e3d1dde.css"


def prepare():
    """The release binary (unless THRUST_BINARY names one), and the packages the scripts run: puma and rack
    (scripts/install-deps installs them), curl."""
    missing = [tool for tool in ("puma", "curl") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run scripts/install-deps first")
    if not os.environ.get("THRUST_BINARY"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PUMA_DEMO = ["puma", "-C", "puma.rb", "config.ru"]
TEST_APP = ["python3", os.path.join(ROOT, "tests/apps/app.py")]


class Thrust:
    """thrust running `command` (the demo app under Puma unless told
    otherwise) from the demo's folder, its stdout in a file."""

    def __init__(self, command=None, keep_log=True, **env):
        self.dir = tempfile.mkdtemp(prefix="thrust-reliability-")
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "thrust.log")
        full_env = dict(os.environ, HTTP_PORT=str(self.port), TARGET_PORT=str(free_port()),
                        DEMO_ALLOWED_HOSTS="localhost,127.0.0.1")
        full_env.update({k: str(v) for k, v in env.items()})
        self.target_port = int(full_env["TARGET_PORT"])
        self.https_port = int(full_env["HTTPS_PORT"]) if "HTTPS_PORT" in full_env else None
        self.metrics_port = int(full_env["THRUST_METRICS_PORT"]) if "THRUST_METRICS_PORT" in full_env else None
        self.log = open(self.log_path if keep_log else os.devnull, "w")
        self.proc = subprocess.Popen([THRUST] + (command or PUMA_DEMO), cwd=DEMO, env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if get(self.port, "/up")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"thrust not ready; log:\n{self.text()}")

    def text(self):
        if not os.path.exists(self.log_path):
            return "(log not kept)"
        with open(self.log_path) as f:
            return f.read()

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def get(port, path, timeout=10, headers=None):
    """(status, body) of one GET on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]
