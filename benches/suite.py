#!/usr/bin/env python3
"""thrust's load benchmark suite: thrust, nginx and `direct`, side by side in one run.

Usage: python3 benches/suite.py [--seconds 5] [--rounds 3] [--only NAME ...] [--no-write]

Installs wrk, nghttp2-client (h2load), nginx-light and nginx's brotli filter
when missing, builds thrust in release mode, then measures on 127.0.0.1:
  direct  load straight at the app (the limit any front can reach);
  nginx   nginx as the equivalent front (benches/nginx/front.conf);
  thrust  thrust as the container's entrypoint, the app as its child.
The app is nginx itself (benches/nginx/app.conf), so the app's cost is small
and the same for every front. Each scenario's responses are checked before it
is timed, then loaded for one unmeasured second; every front runs once per
round, rounds alternate the order, and the tables give the median round. CPU is user+system seconds of the front's own
processes (from /proc) per 1,000 requests; peak RSS is sampled every 20 ms.
The tables replace the generated part of benches/RESULTS.md unless --no-write.
"""
import argparse
import gzip
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, THRUST, PeakRss, cpu_seconds, ensure_tools, fill, free_port,  # noqa: E402
                      h2load, machine_description, process_tree, rss_kib, wait_for_200, wrk)

NGINX_DIR = os.path.join(ROOT, "benches/nginx")
RESULTS = os.path.join(ROOT, "benches/RESULTS.md")
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
DYNAMIC_BODY = ("<p>" + "Hello from the app, rendered for this request. " * 21 + "</p>")[:1024]
ONE_GIB = 1024 ** 3


class Scenario:
    def __init__(self, name, path, tool, connections=32, encoding=None, fronts=("direct", "nginx", "thrust"),
                 size=None, length=1, script=None):
        self.name, self.path, self.tool, self.connections = name, path, tool, connections
        # A wrk Lua script from benches/wrk (pipelining, reading each response).
        self.script = script
        # `length`: multiple of --seconds, so slow scenarios still finish enough requests.
        self.encoding, self.fronts, self.size, self.length = encoding, fronts, size, length


SCENARIOS = [
    Scenario("proxy: small dynamic page (1 KiB, private)", "/dynamic", "wrk", connections=50),
    Scenario("proxy, 200 connections: small dynamic page", "/dynamic", "wrk", connections=200),
    Scenario("proxy, wrk reading each response in Lua: small dynamic page", "/dynamic", "wrk", connections=50,
             script="read_each.lua"),
    Scenario("proxy, HTTP/1.1 pipelined 16 deep: small dynamic page", "/dynamic", "wrk", connections=50,
             script="pipeline.lua"),
    Scenario("proxy, request log off on both: small dynamic page", "/dynamic", "wrk", connections=50,
             fronts=("nginx, log off", "thrust, log off")),
    Scenario("proxy: 20 KB page compressed on the fly, gzip", "/page", "wrk", connections=50, encoding="gzip",
             fronts=("nginx", "thrust")),
    Scenario("proxy: 20 KB page compressed on the fly, br", "/page", "wrk", connections=50, encoding="br",
             fronts=("nginx", "thrust")),
    Scenario("cached asset: 100 KiB JS, identity", "/assets/app.js", "wrk"),
    Scenario("cached asset: 100 KiB JS, gzip", "/assets/app.js", "wrk", encoding="gzip",
             fronts=("nginx", "nginx gzip_static", "thrust")),
    Scenario("cached asset: 100 KiB JS, br", "/assets/app.js", "wrk", encoding="br", fronts=("nginx", "thrust")),
    Scenario("X-Sendfile: 1 MiB file", "/files/1m.bin", "wrk", connections=8),
    Scenario("X-Sendfile: 1 GiB file", "/files/1g.bin", "wrk", connections=2, size=ONE_GIB, length=3),
    Scenario("h2c: small dynamic page", "/dynamic", "h2c"),
    Scenario("h2 over TLS: small dynamic page", "/dynamic", "h2tls", fronts=("nginx", "thrust")),
    Scenario("1,000 idle keep-alive connections + load: small dynamic page", "/dynamic", "wrk+idle"),
]


class Bench:
    """Everything one run starts: files, the app (thrust's child), nginx as front, a TLS thrust."""

    def __init__(self, work):
        self.work = work
        self.procs = []
        names = ("APP_PORT", "APP_H2C_PORT", "HTTP_PORT", "HTTP_NOLOG_PORT", "H2C_PORT", "HTTPS_PORT", "THRUST",
                 "THRUST_NOLOG", "THRUST_H2C", "THRUST_TLS", "THRUST_TLS_HTTP")
        ports = set()
        while len(ports) < len(names):  # a released port can be handed out twice
            ports.add(free_port())
        self.ports = dict(zip(names, sorted(ports)))
        self.asset = b"".join(b"export function f%d(a, b) { return a * %d + b; } // helper %d\n" % (i, i, i)
                              for i in range(2000))[:100 * 1024]
        os.makedirs(os.path.join(work, "assets"))
        os.makedirs(os.path.join(work, "files"))
        os.makedirs(os.path.join(work, "tmp"))
        with open(os.path.join(work, "assets/app.js"), "wb") as f:
            f.write(self.asset)
        with open(os.path.join(work, "assets/app.js.gz"), "wb") as f:
            f.write(gzip.compress(self.asset, 6))
        # A listing page: markup repeated row after row, the words and numbers varying.
        words = ["invoice", "customer", "shipped", "pending", "refund", "order", "account", "total"]
        rows = "".join(f'<tr class="row"><td><a href="/orders/{1000 + i * 7}">#{1000 + i * 7}</a></td>'
                       f'<td>{words[i % 8]} {words[(i * 3) % 8]}</td><td>{(i * 37) % 997}.{i % 100:02d} EUR</td></tr>\n'
                       for i in range(400))
        self.page = (f"<!DOCTYPE html><html><head><title>Orders</title></head><body><table>\n{rows}"
                     )[:20_000].encode()
        with open(os.path.join(work, "page.html"), "wb") as f:
            f.write(self.page)
        self.one_mib = os.urandom(1024 * 1024)
        with open(os.path.join(work, "files/1m.bin"), "wb") as f:
            f.write(self.one_mib)
        with open(os.path.join(work, "files/1g.bin"), "wb") as f:
            f.truncate(ONE_GIB)  # sparse: the page cache serves it, the disk is not what is measured
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost", "-days", "2"], check=True, capture_output=True)
        os.chmod(f"{work}/key.pem", 0o644)  # nginx's workers read it unprivileged
        self.cache_dir = tempfile.mkdtemp(prefix="thrust-bench-cache-", dir="/dev/shm")
        os.chmod(self.cache_dir, 0o777)
        values = dict(self.ports, WORK=work, CACHE_DIR=self.cache_dir, DYNAMIC_BODY=DYNAMIC_BODY)
        fill(os.path.join(NGINX_DIR, "app.conf"), f"{work}/app.conf", values)
        fill(os.path.join(NGINX_DIR, "front.conf"), f"{work}/front.conf", values)

    def app_command(self):
        return ["nginx", "-e", f"{self.work}/app-error.log", "-c", f"{self.work}/app.conf", "-g", "daemon off;"]

    def thrust_env(self, **extra):
        """thrust's defaults (request log on) in front of the app, plus `extra`."""
        env = dict(os.environ, TARGET_PORT=str(self.ports["APP_PORT"]))
        env.pop("LOG_REQUESTS", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def spawn(self, cmd, env=None, log=None):
        out = open(os.path.join(self.work, log), "w") if log else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def start(self):
        self.thrust = self.spawn([THRUST] + self.app_command(), log="thrust.log",
                                 env=self.thrust_env(HTTP_PORT=self.ports["THRUST"]))
        wait_for_200(f"http://127.0.0.1:{self.ports['THRUST']}/dynamic")
        # A second thrust, for TLS only (with TLS on, the HTTP port redirects):
        # it fronts the same app, its own child just waits.
        self.thrust_tls = self.spawn([THRUST, "sleep", "infinity"], log="thrust-tls.log", env=self.thrust_env(
            HTTP_PORT=self.ports["THRUST_TLS_HTTP"], HTTPS_PORT=self.ports["THRUST_TLS"],
            SSL_CERT_PATH=f"{self.work}/cert.pem", SSL_KEY_PATH=f"{self.work}/key.pem"))
        # The same site with the request log off: a thrust whose child waits.
        self.thrust_nolog = self.spawn([THRUST, "sleep", "infinity"], env=self.thrust_env(
            HTTP_PORT=self.ports["THRUST_NOLOG"], LOG_REQUESTS=0))
        # h2c is off by default, and turning it on changes how every plain
        # connection is served: the h2c scenario has a thrust of its own.
        self.thrust_h2c = self.spawn([THRUST, "sleep", "infinity"], env=self.thrust_env(
            HTTP_PORT=self.ports["THRUST_H2C"], H2C_ENABLED=1))
        self.nginx = self.spawn(["nginx", "-e", f"{self.work}/front-error.log", "-c", f"{self.work}/front.conf",
                                 "-g", "daemon off;"])
        wait_for_200(f"http://127.0.0.1:{self.ports['HTTP_PORT']}/dynamic")
        wait_for_200(f"http://127.0.0.1:{self.ports['THRUST_TLS_HTTP']}/up")
        wait_for_200(f"http://127.0.0.1:{self.ports['THRUST_NOLOG']}/dynamic")
        wait_for_200(f"http://127.0.0.1:{self.ports['THRUST_H2C']}/dynamic")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def pids(self, front, scenario):
        if front == "thrust" and scenario.tool == "h2tls":
            return [self.thrust_tls.pid]
        if front == "direct":
            return [p for p in process_tree(self.thrust.pid) if p != self.thrust.pid]
        if front.startswith("nginx"):
            return process_tree(self.nginx.pid)
        if front == "thrust, log off":
            return [self.thrust_nolog.pid]
        if front == "thrust" and scenario.tool == "h2c":
            return [self.thrust_h2c.pid]
        return [self.thrust.pid]

    def url(self, front, scenario):
        path = scenario.path
        if front == "direct" and path.startswith("/files/"):
            path = path.replace("/files/", "/raw/")
        if front == "nginx gzip_static":
            return f"http://127.0.0.1:{self.ports['HTTP_PORT']}{path.replace('/assets/', '/static/')}"
        if scenario.tool == "h2tls":
            port = self.ports["THRUST_TLS"] if front == "thrust" else self.ports["HTTPS_PORT"]
            return f"https://127.0.0.1:{port}{path}"
        if scenario.tool == "h2c":
            key = {"direct": "APP_H2C_PORT", "nginx": "H2C_PORT", "thrust": "THRUST_H2C"}[front]
        else:
            key = {"direct": "APP_PORT", "nginx": "HTTP_PORT", "thrust": "THRUST", "nginx, log off": "HTTP_NOLOG_PORT",
                   "thrust, log off": "THRUST_NOLOG"}[front]
        return f"http://127.0.0.1:{self.ports[key]}{path}"

    def expected(self, scenario):
        if scenario.path == "/dynamic":
            return DYNAMIC_BODY.encode()
        if scenario.path == "/page":
            return self.page
        if scenario.path == "/assets/app.js":
            return self.asset
        if scenario.path == "/files/1m.bin":
            return self.one_mib
        return None  # 1 GiB of zeros: checked by length

    def check(self, front, scenario):
        """One request with curl, as the load tool will make it: status, encoding, protocol and body must be right."""
        url = self.url(front, scenario)
        body_path = os.path.join(self.work, "check.body")
        cmd = ["curl", "-sS", "-o", body_path, "-w", "%{http_code} %{http_version} %{size_download}",
               "-D", os.path.join(self.work, "check.head")]
        cmd += {"h2c": ["--http2-prior-knowledge"], "h2tls": ["-k", "--http2"]}.get(scenario.tool, [])
        if scenario.encoding:
            cmd += ["--compressed", "-H", f"Accept-Encoding: {scenario.encoding}"]
        out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout.split()
        with open(os.path.join(self.work, "check.head")) as f:
            head = f.read().lower()
        problem = None
        if out[0] != "200":
            problem = f"status {out[0]}"
        elif scenario.tool in ("h2c", "h2tls") and out[1] != "2":
            problem = f"HTTP/{out[1]}"
        elif scenario.encoding and f"content-encoding: {scenario.encoding}" not in head:
            problem = f"not {scenario.encoding}-encoded"
        elif not scenario.encoding and "content-encoding" in head:
            problem = "encoded although the client did not ask"
        else:
            expected = self.expected(scenario)
            if expected is None:
                if int(out[2]) != scenario.size:
                    problem = f"{out[2]} bytes"
            else:
                with open(body_path, "rb") as f:
                    if f.read() != expected:
                        problem = "wrong body"
        os.remove(body_path)
        if problem:
            raise RuntimeError(f"{scenario.name}, {front}: {url}: {problem}")

    def measure(self, front, scenario, seconds):
        self.check(front, scenario)
        pids = self.pids(front, scenario)
        url = self.url(front, scenario)
        headers = [f"Accept-Encoding: {scenario.encoding}"] if scenario.encoding else []
        idle = open_idle_connections(url, 1000) if scenario.tool == "wrk+idle" else []
        if idle:
            time.sleep(1.5)  # idle, as the scenario says, before the load starts
        try:
            before = cpu_seconds(pids)
            with PeakRss(pids) as rss:
                if scenario.tool in ("h2c", "h2tls"):
                    result = h2load(url, seconds * scenario.length, os.path.join(self.work, "h2load.log"))
                else:
                    result = wrk(url, seconds * scenario.length, scenario.connections, headers, scenario.script)
            used = cpu_seconds(pids) - before
            if idle:
                result["errors"] += 1000 - still_open(idle)
        finally:
            for s in idle:
                s.close()
        result["cpu_per_1k"] = used / max(result["requests"], 1) * 1000
        result["peak_rss_mib"] = rss.peak_kib / 1024
        return result


def open_idle_connections(url, count):
    """`count` keep-alive connections that each made one request and now sit idle."""
    host, port = url.split("/")[2].split(":")
    request = f"GET /dynamic HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    conns = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(request)
        conns.append(s)
    for s in conns:
        received = b""
        while len(received) < len(DYNAMIC_BODY) or b"\r\n\r\n" not in received:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError(f"{url}: an idle connection was closed before its answer")
            received += chunk
    return conns


def still_open(conns):
    """How many of the idle connections the server has not closed."""
    open_count = 0
    for s in conns:
        s.setblocking(False)
        try:
            open_count += 0 if s.recv(1) == b"" else 1
        except BlockingIOError:
            open_count += 1
        except OSError:
            pass
    return open_count


SLOW_STOPS = []


def stop(proc):
    """SIGTERM, then up to 10 s to exit; a process that takes longer is killed
    and reported under the tables rather than ending the run."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        SLOW_STOPS.append(" ".join(proc.args))


def startup(bench, runs):
    """Start-up figures: thrust to listening, and each front's spawn to first 200 on /dynamic."""
    def timed(cmd, env, url):
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_200(url)
            elapsed_ms = (time.perf_counter() - started) * 1000
            return elapsed_ms, rss_kib(process_tree(proc.pid) if cmd[0] == "nginx" else [proc.pid])
        finally:
            stop(proc)

    def listening_ms():
        port = free_port()
        started = time.perf_counter()
        proc = subprocess.Popen([THRUST, "sleep", "30"], env=bench.thrust_env(HTTP_PORT=port, TARGET_PORT=free_port()),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                    return (time.perf_counter() - started) * 1000
                except OSError:
                    if time.perf_counter() - started > 5:
                        raise RuntimeError("thrust never listened")
                    time.sleep(0.0002)
        finally:
            stop(proc)

    rows = []
    listening = sorted(listening_ms() for _ in range(runs))
    rows.append(("thrust: process start → HTTP port accepting (child `sleep`)", listening, None))
    port = free_port()
    env = bench.thrust_env(HTTP_PORT=port, TARGET_PORT=bench.ports["APP_PORT"])
    # A standalone thrust in front of the already running app: its child only waits.
    thrust_runs = [timed([THRUST, "sleep", "30"], env, f"http://127.0.0.1:{port}/dynamic") for _ in range(runs)]
    rows.append(("thrust: process start → first proxied 200", sorted(t for t, _ in thrust_runs), thrust_runs[-1][1]))
    nginx_runs = []
    for _ in range(runs):
        fill(os.path.join(NGINX_DIR, "front.conf"), f"{bench.work}/front-startup.conf",
             dict(bench.ports, WORK=bench.work, CACHE_DIR=bench.cache_dir, DYNAMIC_BODY=DYNAMIC_BODY,
                  HTTP_PORT=port, HTTP_NOLOG_PORT=free_port(), H2C_PORT=free_port(), HTTPS_PORT=free_port()))
        nginx_runs.append(timed(["nginx", "-e", f"{bench.work}/front-startup-error.log", "-c",
                                 f"{bench.work}/front-startup.conf", "-g", "daemon off;"], None,
                                f"http://127.0.0.1:{port}/dynamic"))
    rows.append(("nginx front: process start → first proxied 200", sorted(t for t, _ in nginx_runs), nginx_runs[-1][1]))
    # The app's own start-up, and thrust launching the app as its child (as
    # in a container): the goal is the app's time + 5 ms.
    app_port = free_port()
    fill(os.path.join(NGINX_DIR, "app.conf"), f"{bench.work}/app-startup.conf",
         dict(bench.ports, WORK=bench.work, CACHE_DIR=bench.cache_dir, DYNAMIC_BODY=DYNAMIC_BODY,
              APP_PORT=app_port, APP_H2C_PORT=free_port()))
    app_cmd = ["nginx", "-e", f"{bench.work}/app-startup-error.log", "-c", f"{bench.work}/app-startup.conf",
               "-g", "daemon off;"]
    app_runs = [timed(app_cmd, None, f"http://127.0.0.1:{app_port}/dynamic") for _ in range(runs)]
    rows.append(("the app alone: process start → first 200", sorted(t for t, _ in app_runs), app_runs[-1][1]))
    port = free_port()
    env = bench.thrust_env(HTTP_PORT=port, TARGET_PORT=app_port)
    launched = [timed([THRUST] + app_cmd, env, f"http://127.0.0.1:{port}/dynamic") for _ in range(runs)]
    rows.append(("thrust launching the app: process start → first proxied 200", sorted(t for t, _ in launched), None))
    return rows


def table(results, scenarios):
    lines = ["| scenario | front | req/s | MiB/s | p50 ms | p99 ms | CPU s / 1k req | peak RSS MiB | errors | req/s vs nginx | req/s vs direct | CPU vs nginx |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for scenario in scenarios:
        rows = results[scenario.name]
        nginx = next((r for front, r in rows.items() if front.startswith("nginx") and front != "nginx gzip_static"), None)
        direct = rows.get("direct")
        for front, r in rows.items():
            vs_nginx = f"{r['rps'] / nginx['rps']:.2f}x" if nginx and nginx["rps"] else "-"
            vs_direct = f"{r['rps'] / direct['rps']:.2f}x" if direct and direct["rps"] else "-"
            cpu_vs = f"{r['cpu_per_1k'] / nginx['cpu_per_1k']:.2f}x" if nginx and nginx["cpu_per_1k"] else "-"
            lines.append(f"| {scenario.name} | {front} | {r['rps']:.0f} | {r['bytes_per_s'] / 2 ** 20:.0f} | {r['p50']:.2f} | "
                         f"{r['p99']:.2f} | {r['cpu_per_1k']:.4f} | {r['peak_rss_mib']:.1f} | {r['errors']} | "
                         f"{vs_nginx} | {vs_direct} | {cpu_vs} |")
    return "\n".join(lines)


def round_by_round(each_round, scenarios):
    """thrust's CPU per request over nginx's in each round (the two ran
    back to back in it): the spread the medians hide."""
    lines = ["thrust's CPU per request against nginx's, round by round (each pair ran back to back):", "",
             "| scenario | fronts | each round | lowest – highest |", "|---|---|---|---|"]
    for scenario in scenarios:
        rounds = each_round.get(scenario.name, {})
        for front in scenario.fronts:
            reference = front.replace("thrust", "nginx")
            if not front.startswith("thrust") or reference not in rounds:
                continue
            ratios = [ours["cpu_per_1k"] / theirs["cpu_per_1k"]
                      for ours, theirs in zip(rounds[front], rounds[reference]) if theirs["cpu_per_1k"] > 0]
            if ratios:
                lines.append(f"| {scenario.name} | {front} / {reference} | "
                             f"{', '.join(f'{r:.2f}x' for r in ratios)} | {min(ratios):.2f}x – {max(ratios):.2f}x |")
    return "\n".join(lines)


def median_round(rounds):
    """Each figure's median over the rounds (errors: the sum)."""
    merged = {key: statistics.median(r[key] for r in rounds) for key in rounds[0] if key != "errors"}
    merged["errors"] = sum(r["errors"] for r in rounds)
    return merged


def write_results(text):
    with open(RESULTS) as f:
        current = f.read()
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        updated = head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1]
    else:
        updated = current.rstrip("\n") + "\n\n" + BEGIN + "\n" + text + "\n" + END + "\n"
    with open(RESULTS, "w") as f:
        f.write(updated)


def prepare():
    """The tools every bench script runs, and room for thousands of connections."""
    ensure_tools([("wrk", "wrk"), ("h2load", "nghttp2-client"), ("nginx", "nginx-light"), ("curl", "curl"),
                  ("openssl", "openssl"), ("/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so",
                                       "libnginx-mod-http-brotli-filter")])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def comparison(prefix, usage, with_app=True):
    """For the scripts that compare thrust binaries: the binaries named on
    the command line and a Bench, with the app running unless told not to."""
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(usage)
    prepare()
    bench = Bench(tempfile.mkdtemp(prefix=prefix))
    if with_app:
        bench.spawn(bench.app_command())
        time.sleep(0.5)
    return binaries, bench


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each timed run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per front and scenario; the median is reported")
    parser.add_argument("--only", nargs="*", help="scenarios whose name contains one of these words")
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave benches/RESULTS.md alone")
    args = parser.parse_args()
    prepare()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    scenarios = [s for s in SCENARIOS if not args.only or any(word in s.name for word in args.only)]

    work = tempfile.mkdtemp(prefix="thrust-bench-")
    os.chmod(work, 0o755)
    bench = Bench(work)
    results, each_round = {}, {}
    try:
        bench.start()
        for scenario in scenarios:
            for front in scenario.fronts:  # warm-up, not measured: pools, caches, allocator
                bench.measure(front, scenario, 1)
            rounds = {front: [] for front in scenario.fronts}
            for i in range(args.rounds):
                order = list(scenario.fronts) if i % 2 == 0 else list(reversed(scenario.fronts))
                for front in order:
                    r = bench.measure(front, scenario, args.seconds)
                    rounds[front].append(r)
                    print(f"  {front}: {r['rps']:.0f} req/s, {r['cpu_per_1k']:.4f} CPU s/1k, {r['errors']} errors",
                          file=sys.stderr)
            results[scenario.name] = {front: median_round(rounds[front]) for front in scenario.fronts}
            each_round[scenario.name] = rounds
            print(f"done: {scenario.name}", file=sys.stderr)
        start_rows = startup(bench, 20) if not args.only else []
        idle_rss = rss_kib([bench.thrust.pid])
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(bench.cache_dir, ignore_errors=True)

    command = "python3 benches/suite.py" + "".join(
        f" --{k} {v}" for k, v in (("seconds", args.seconds), ("rounds", args.rounds)))
    parts = [
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}.",
        "",
        machine_description(),
        "",
        "Both fronts run with their request logs on (thrust's defaults; nginx with an unbuffered JSON access log "
        "of the same fields), except in the 'request log off on both' rows. thrust runs with its defaults "
        "everywhere (h2c off), except for the h2c row, which has a thrust with H2C_ENABLED=1 of its own. "
        f"Load: wrk -t1 (connections: proxy 50, or 200 where the name says so; assets 32; 1 MiB files 8; 1 GiB files 2) "
        f"or h2load -c4 -m10, "
        f"{args.seconds} s per run (1 GiB files: {3 * args.seconds} s) after 1 s of unmeasured warm-up, {args.rounds} rounds, "
        "median shown; errors summed over the rounds. "
        "All processes share the machine's CPUs.",
        "",
        table(results, scenarios),
        "",
        round_by_round(each_round, scenarios),
    ]
    if start_rows:
        parts += ["", "| start-up (20 runs) | median ms | min ms | max ms | RSS after, MiB |", "|---|---|---|---|---|"]
        for name, runs, rss in start_rows:
            rss_text = f"{rss / 1024:.1f}" if rss else "-"
            parts.append(f"| {name} | {statistics.median(runs):.2f} | {runs[0]:.2f} | {runs[-1]:.2f} | {rss_text} |")
        parts += ["", f"thrust's RSS after the whole run (cache holding the asset and its variants): {idle_rss / 1024:.1f} MiB."]
    if SLOW_STOPS:
        parts += ["", "Did not exit within 10 s of SIGTERM (killed): " + "; ".join(f"`{c}`" for c in SLOW_STOPS)]
    text = "\n".join(parts)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    sys.exit(main())
