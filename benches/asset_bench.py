#!/usr/bin/env python3
"""Cached 100 KiB JavaScript asset: thrust vs nginx vs direct, in one run.

Usage: benches/asset_bench.py [--seconds N]
Installs wrk and nginx (Debian packages) when missing, builds thrust in
release mode, then for each front measures, with and without
`Accept-Encoding: gzip`:
  - requests per second (wrk, 1 thread, 32 connections, N seconds),
  - CPU seconds of the front's processes per 1,000 requests (/proc/PID/stat),
  - p50 / p99 latency.
Fronts:
  direct        the Python test app serving the asset itself (no front);
  thrust        thrust in front of that app; the asset is public and
                cached, so after the first request every answer is a cache hit
                (gzip: a stored compressed variant);
  nginx static  nginx serving the file from disk, `gzip_static on` with a
                precompressed .gz beside it (nginx's best case);
  nginx gzip    nginx serving the file from disk, compressing on the fly
                (`gzip on`, level 1, nginx's default).
Prints a Markdown table; responses are checked before each timed run.
"""
import os
import re
import shutil
import subprocess
import sys
import time
import gzip
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import APP, THRUST, cpu_seconds, free_port, nginx_conf, prepare, process_tree  # noqa: E402


def wait_http(url, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def check(url, gzip_wanted, expected):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_wanted else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read()
        encoding = r.headers.get("Content-Encoding")
    if gzip_wanted:
        assert encoding == "gzip", f"{url}: expected gzip, got {encoding}"
        body = gzip.decompress(body)
    else:
        assert encoding is None, f"{url}: expected identity, got {encoding}"
    assert body == expected, f"{url}: wrong body"


def wrk(url, gzip_wanted, seconds):
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
    if gzip_wanted:
        cmd += ["-H", "Accept-Encoding: gzip"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)

    def latency(pct):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return {
        "requests": requests, "rps": rps, "p50": latency(50), "p99": latency(99),
        "errors": (int(errors.group(1)) if errors else 0) + (1 if socket_errors else 0),
    }


def measure(name, url, pids, gzip_wanted, expected, seconds):
    check(url, gzip_wanted, expected)
    before = cpu_seconds(pids)
    result = wrk(url, gzip_wanted, seconds)
    used = cpu_seconds(pids) - before
    result["cpu_per_1k"] = used / result["requests"] * 1000
    result["name"] = name
    result["gzip"] = gzip_wanted
    return result


def main():
    args, work = prepare([("wrk", "wrk"), ("nginx", "nginx-light")], "thrust-bench-")
    body = b"".join(b"export function f%d(a, b) { return a * %d + b; } // helper number %d\n" % (i, i, i) for i in range(2000))[: 100 * 1024]
    os.makedirs(os.path.join(work, "assets"))
    path = os.path.join(work, "assets", "app.js")
    with open(path, "wb") as f:
        f.write(body)
    with open(path + ".gz", "wb") as f:
        f.write(gzip.compress(body, 6))

    procs = []
    results = []
    try:
        app_port, thrust_port = free_port(), free_port()
        env = dict(os.environ, HTTP_PORT=str(thrust_port), TARGET_PORT=str(app_port), LOG_REQUESTS="0")
        thrust = subprocess.Popen([THRUST, "python3", APP], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(thrust)
        wait_http(f"http://127.0.0.1:{thrust_port}/up")
        target = f"/asset?path={path}"
        thrust_url = f"http://127.0.0.1:{thrust_port}{target}"
        direct_url = f"http://127.0.0.1:{app_port}{target}"
        urllib.request.urlopen(thrust_url).read()  # first request fills the cache
        time.sleep(0.5)

        nginx_port, nginx_gzip_port = free_port(), free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(work, NGINX_SERVERS.format(work=work, port=nginx_port, gzip_port=nginx_gzip_port)))
        nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(nginx)
        wait_http(f"http://127.0.0.1:{nginx_port}/assets/app.js")

        app_pids = [p for p in process_tree(thrust.pid) if p != thrust.pid]
        nginx_pids = process_tree(nginx.pid)
        nginx_url = f"http://127.0.0.1:{nginx_port}/assets/app.js"
        results.append(measure("direct (Python app)", direct_url, app_pids, False, body, args.seconds))
        for gzip_wanted in (False, True):
            results.append(measure("thrust (cache hit)", thrust_url, [thrust.pid], gzip_wanted, body, args.seconds))
            label = "nginx static + gzip_static" if gzip_wanted else "nginx static"
            results.append(measure(label, nginx_url, nginx_pids, gzip_wanted, body, args.seconds))
        gzip_url = f"http://127.0.0.1:{nginx_gzip_port}/assets/app.js"
        results.append(measure("nginx static + gzip on the fly", gzip_url, nginx_pids, True, body, args.seconds))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    print(f"Cached 100 KiB JavaScript asset; wrk -t1 -c32 -d{args.seconds}s; {os.cpu_count()} CPUs")
    print()
    print("| front | Accept-Encoding | req/s | p50 ms | p99 ms | CPU s / 1k req | errors | vs nginx |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        nginx = next(x for x in results if x["name"].startswith("nginx static") and x["gzip"] == r["gzip"])
        print(f"| {r['name']} | {'gzip' if r['gzip'] else '-'} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_per_1k']:.3f} | {r['errors']} | {r['rps'] / nginx['rps']:.2f}x |")


NGINX_SERVERS = """
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        root {work};
        gzip_static on;
    }}
    server {{
        listen 127.0.0.1:{gzip_port};
        root {work};
        gzip on;
        gzip_types application/javascript text/javascript;
    }}
"""

if __name__ == "__main__":
    sys.exit(main())
