"""Helpers for the load benchmarks: tools, ports, /proc accounting, load generators."""
import contextlib
import os
import platform
import re
import shutil
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRUST = os.path.join(ROOT, "target/release/thrust")
TICKS = os.sysconf("SC_CLK_TCK")


def ensure_tools(tools):
    """Installs the Debian packages for the (path or command, package) pairs missing here."""
    missing = [pkg for tool, pkg in tools if not (os.path.exists(tool) or shutil.which(tool) or shutil.which(tool, path="/usr/sbin"))]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(template_path, out_path, values):
    """Writes `template_path` with every @KEY@ replaced by values[KEY]."""
    with open(template_path) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    leftover = re.search(r"@[A-Z_0-9]+@", text)
    if leftover:
        raise ValueError(f"{template_path}: no value for {leftover.group(0)}")
    with open(out_path, "w") as f:
        f.write(text)


def cpu_seconds(pids):
    """User + system CPU seconds used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / TICKS


def process_tree(pid):
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        pids += kids
        frontier += kids
    return pids


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


class PeakRss:
    """Samples the summed RSS of some processes every 20 ms while in a `with` block."""

    def __init__(self, pids):
        self.pids, self.peak_kib = pids, rss_kib(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak_kib = max(self.peak_kib, rss_kib(self.pids))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def fresh_front(cmd, env, port, pids_of, stdout=subprocess.DEVNULL):
    """A front started for one measurement: yields its /dynamic URL, the pids
    whose CPU and RSS are its own (`pids_of(proc)`) and their RSS once it has
    answered; stops it afterwards."""
    front = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/dynamic"
        wait_for_200(url)
        time.sleep(0.3)
        pids = pids_of(front)
        yield url, pids, rss_kib(pids)
    finally:
        front.terminate()
        front.wait()


def wait_for_200(url, timeout=10.0, insecure=False):
    """Polls `url` until it answers 200; returns the seconds it took."""
    started = time.perf_counter()
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() - started < timeout:
        try:
            with socket.create_connection((host, int(port)), timeout=1) as s:
                s.sendall(request)
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, seconds, connections, headers=(), script=None):
    """One wrk run (1 thread), with a Lua script from benches/wrk if named;
    returns requests, rps, bytes/s, p50/p99 ms and errors."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk", script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    scale = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "bytes_per_s": float(transfer.group(1)) * scale[transfer.group(2)],
        "p50": _ms(*re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out).groups()),
        "p99": _ms(*re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out).groups()),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0),
    }


def h2load(url, seconds, log_path):
    """One h2load run (4 clients x 10 streams); latency percentiles come from its per-request log."""
    cmd = ["h2load", "-c4", "-m10", "-D", str(seconds), "--log-file", log_path, url]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s, ([\d.]+)(B|KB|MB|GB)/s", out)
    protocol = re.search(r"Application protocol: (\S+)", out)
    if not (done and rps and protocol) or protocol.group(1) not in ("h2", "h2c"):
        raise RuntimeError(f"h2load {url}:\n{out}")
    p50, p99 = h2load_latencies(log_path, 50, 99)
    succeeded = int(done.group(1))
    scale = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
    return {
        "requests": succeeded, "rps": float(rps.group(1)),
        "bytes_per_s": float(rps.group(2)) * scale[rps.group(3)],
        "p50": p50, "p99": p99,
        "errors": int(done.group(2)) + int(done.group(3)),
    }


def h2load_latencies(log_path, *percentiles):
    """The given percentiles (and 100: the slowest) of the request durations
    in an h2load --log-file, in ms; the log is removed."""
    with open(log_path) as f:
        durations = sorted(int(line.split("\t")[2]) for line in f if line.count("\t") >= 2)
    os.remove(log_path)
    if not durations:
        return [0.0] * len(percentiles)
    return [durations[min(len(durations) - 1, int(len(durations) * p / 100))] / 1000 for p in percentiles]


def machine_description():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 1024 / 1024
    try:
        with open("/etc/debian_version") as f:
            debian = "Debian " + f.read().strip()
    except OSError:
        debian = platform.platform()

    def version(cmd):
        result = subprocess.run(cmd, capture_output=True, text=True)
        return (result.stdout + result.stderr).strip().splitlines()[0]

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return "\n".join([
        f"- CPU: {os.cpu_count()} x {model}; RAM {mem_gib:.0f} GiB; {debian}; Linux {platform.release()}",
        f"- {version(['nginx', '-v'])}; {version(['wrk', '--version'])}; {version(['h2load', '--version'])}",
        f"- thrust at commit {commit or 'unknown'}, built with `cargo build --release` ({version(['rustc', '--version'])})",
    ])


# The JSON access log the scripts' own nginx fronts write, as the suite's
# front does: a str.format template (braces doubled).
NGINX_JSON_LOG = """    log_format json escape=json '{{"time":"$time_iso8601","path":"$uri","status":$status,'
        '"dur":$request_time,"method":"$request_method","remote_addr":"$remote_addr"}}';
    access_log {work}/access.log json;"""


def nginx_proxy_conf(server=(), location=('proxy_set_header Connection "";',), listen="",
                     connections=4096, keepalive=64):
    """nginx proxying everything to the app as the scripts' own fronts do: two
    workers, the JSON access log, a pool of keep-alive connections to the app.
    A str.format template of work, app_port, port and log (NGINX_JSON_LOG),
    like the fronts TestAppFronts starts; `server` and `location` are lines
    for those blocks (they may hold placeholders of their own), `listen` what
    follows the address on the listen line."""
    def block(lines, indent):
        return "".join(f"{' ' * indent}{line}\n" for line in lines)
    return ("worker_processes 2;\n"
            f"events {{{{ worker_connections {connections}; }}}}\n"
            "http {{\n{log}\n"
            f"    upstream app {{{{ server 127.0.0.1:{{app_port}}; keepalive {keepalive}; }}}}\n"
            "    server {{\n"
            f"        listen 127.0.0.1:{{port}}{listen};\n"
            + block(server, 8)
            + "        location / {{\n"
            "            proxy_pass http://app;\n"
            "            proxy_http_version 1.1;\n"
            + block(location, 12)
            + "        }}\n    }}\n}}\n")


class TestAppFronts:
    """tests/apps/app.py on a free port with fronts before it: each thrust
    binary with its defaults (request log on, read by `cat`) and nginx
    configured by `nginx_conf`, a template formatted with work, app_port,
    port, log (NGINX_JSON_LOG) and `conf_values`; with `direct`, the app alone too. `fronts`:
    (name, port, pids whose CPU is the front's). Everything stops on exit."""

    def __init__(self, prefix, binaries, nginx_conf, direct=False, **conf_values):
        import sys
        import tempfile
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.fronts = []
        self._procs = []
        self._sinks = []
        app_port = free_port()
        self._start([sys.executable, os.path.join(ROOT, "tests/apps/app.py")],
                    dict(os.environ, PORT=str(app_port), APP_LOG=os.path.join(self.work, "app.log")))
        try:
            wait_for_200(f"http://127.0.0.1:{app_port}/")
            for binary in binaries:
                port = free_port()
                env = dict(os.environ, TARGET_PORT=str(app_port), HTTP_PORT=str(port))
                env.pop("LOG_REQUESTS", None)
                proc = self._start([binary, "sleep", "infinity"], env, stdout=subprocess.PIPE)
                self._sinks.append(subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL))
                self.fronts.append((binary, port, [proc.pid]))
            port = free_port()
            conf = os.path.join(self.work, "nginx.conf")
            with open(conf, "w") as f:
                f.write(nginx_conf.format(work=self.work, app_port=app_port, port=port,
                                          log=NGINX_JSON_LOG.format(work=self.work), **conf_values))
            nginx = self._start(["nginx", "-e", os.path.join(self.work, "error.log"), "-c", conf,
                                 "-g", f"daemon off; pid {self.work}/nginx.pid;"], None)
            time.sleep(0.5)
            self.fronts.append(("nginx", port, process_tree(nginx.pid)))
            if direct:
                # The app alone: its rate; no front's CPU to count.
                self.fronts.append(("direct", app_port, []))
            for _, front_port, _ in self.fronts:
                wait_for_200(f"http://127.0.0.1:{front_port}/")
        except BaseException:
            self.stop()
            raise

    def _start(self, cmd, env, stdout=subprocess.DEVNULL, stdin=None):
        proc = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
        self._procs.append(proc)
        return proc

    def stop(self):
        # nginx and the thrusts first, the app last; a log reader ends with
        # its thrust.
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
        for sink in self._sinks:
            sink.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
