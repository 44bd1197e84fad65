"""CPU per request of two or more thrust binaries side by side, alternating
which goes first every round, in front of the suite's nginx app, in three
load shapes: proxied page over HTTP/1.1 (wrk -c50), the same with 1,000 idle
keep-alive connections open (parked), the same pipelined 16 deep (wrk -c50
with benches/wrk/pipeline.lua), and h2c (h2load -c4 -m10, H2C_ENABLED=1);
on request, h2tls: h2 over TLS with the suite's certificate (h2load -c4
-m10); page-br: the suite's 20 KB page compressed with brotli for
every request (wrk -c50). Request logs on (thrust's defaults), stdout read by `cat`.
Prints each run and the median per binary and shape.

Usage: python3 benches/binaries_ab.py BINARY [BINARY ...]
  ROUNDS=4 by default; SHAPES="http1 idle pipelined h2c" by default
"""
import os
import re
import socket
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, h2load, wait_for_200  # noqa: E402
import suite  # noqa: E402

SECONDS = 5


def start(bench, binary, extra):
    port = free_port()
    env = dict(os.environ, TARGET_PORT=str(bench.ports["APP_PORT"]), HTTP_PORT=str(port), **extra)
    thrust = subprocess.Popen([binary, "sleep", "infinity"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sink = subprocess.Popen(["cat"], stdin=thrust.stdout, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/dynamic"
    wait_for_200(url if "HTTPS_PORT" not in extra else f"http://127.0.0.1:{port}/up")
    if "HTTPS_PORT" in extra:
        url = f"https://127.0.0.1:{extra['HTTPS_PORT']}/dynamic"
    return thrust, sink, port, url


def wrk_requests(url, seconds, script=None, headers=()):
    cmd = ["wrk", "-t1", "-c50", f"-d{seconds}s", url]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk", script)]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1))


def measure(bench, binary, shape, work):
    extra = {"H2C_ENABLED": "1"} if shape == "h2c" else {}
    if shape == "h2tls":
        # With TLS on, the HTTP port answers /up and redirects the rest.
        extra = {"HTTPS_PORT": str(free_port()), "SSL_CERT_PATH": f"{work}/cert.pem",
                 "SSL_KEY_PATH": f"{work}/key.pem"}
    thrust, sink, port, url = start(bench, binary, extra)
    idle = []
    if shape == "idle":
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /dynamic HTTP/1.1\r\nHost: t\r\n\r\n")
            idle.append(s)
        for s in idle:
            s.recv(65536)
    if shape in ("h2c", "h2tls"):
        h2load(url, 1, os.path.join(work, "h2load.log"))  # warm-up
        before = cpu_seconds([thrust.pid])
        requests = h2load(url, SECONDS, os.path.join(work, "h2load.log"))["requests"]
    else:
        script = "pipeline.lua" if shape == "pipelined" else None
        headers = ["Accept-Encoding: br"] if shape == "page-br" else []
        if shape == "page-br":
            url = url.replace("/dynamic", "/page")
        wrk_requests(url, 1, script, headers)  # warm-up
        before = cpu_seconds([thrust.pid])
        requests = wrk_requests(url, SECONDS, script, headers)
    used = cpu_seconds([thrust.pid]) - before
    for s in idle:
        s.close()
    thrust.terminate()
    thrust.wait()
    sink.wait()
    return used * 1e6 / requests


def main():
    binaries, bench = suite.comparison("thrust-binaries-", __doc__)
    results = {}
    try:
        for round_ in range(int(os.environ.get("ROUNDS", "4"))):
            order = binaries if round_ % 2 == 0 else list(reversed(binaries))
            for shape in os.environ.get("SHAPES", "http1 idle pipelined h2c").split():
                for binary in order:
                    cpu = measure(bench, binary, shape, bench.work)
                    results.setdefault((binary, shape), []).append(cpu)
                    print(f"round {round_ + 1} {shape} {binary}: {cpu:.1f} CPU µs/req", flush=True)
    finally:
        bench.stop()
    for (binary, shape), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"median {shape} {binary}: {statistics.median(runs):.1f} CPU µs/req over {len(runs)} runs")


if __name__ == "__main__":
    main()
