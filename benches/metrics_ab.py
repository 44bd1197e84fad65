"""What /metrics costs: CPU per proxied request and request rate with
THRUST_METRICS_PORT unset and set (scraped every second during the run, more
often than Prometheus' default 15 s), alternating, for one or more thrust
binaries, in front of the suite's nginx app, with the defaults (request log
on, read by `cat` from a pipe).

Usage: python3 benches/metrics_ab.py BINARY [BINARY ...]   (ROUNDS=4 by default)
"""
import os
import re
import statistics
import subprocess
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, wait_for_200  # noqa: E402
import suite  # noqa: E402

SECONDS = 5


def scrape_every_second(url, stop):
    while not stop.wait(1):
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()


def measure(bench, binary, metrics):
    port = free_port()
    env = dict(os.environ, TARGET_PORT=str(bench.ports["APP_PORT"]), HTTP_PORT=str(port))
    metrics_port = free_port()
    if metrics:
        env["THRUST_METRICS_PORT"] = str(metrics_port)
    thrust = subprocess.Popen([binary, "sleep", "infinity"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sink = subprocess.Popen(["cat"], stdin=thrust.stdout, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/dynamic"
    wait_for_200(url)
    subprocess.run(["wrk", "-t1", "-c50", "-d1s", url], capture_output=True)  # warm-up
    stop = threading.Event()
    scraper = threading.Thread(target=scrape_every_second,
                               args=(f"http://127.0.0.1:{metrics_port}/metrics", stop))
    if metrics:
        scraper.start()
    before = cpu_seconds([thrust.pid])
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{SECONDS}s", url], capture_output=True, text=True).stdout
    used = cpu_seconds([thrust.pid]) - before
    stop.set()
    if metrics:
        scraper.join()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    thrust.terminate()
    thrust.wait()
    sink.wait()
    return requests / SECONDS, used * 1e6 / requests


def main():
    binaries, bench = suite.comparison("thrust-metrics-", __doc__)
    results = {}
    try:
        for _ in range(int(os.environ.get("ROUNDS", "4"))):
            for binary in binaries:
                for metrics in (False, True):
                    rate, cpu = measure(bench, binary, metrics)
                    results.setdefault((binary, metrics), []).append((rate, cpu))
                    label = "THRUST_METRICS_PORT set" if metrics else "unset"
                    print(f"{binary} {label}: {rate:.0f} req/s, {cpu:.1f} CPU µs/req", flush=True)
    finally:
        bench.stop()
    for (binary, metrics), runs in results.items():
        label = "THRUST_METRICS_PORT set" if metrics else "unset"
        print(f"median {binary} {label}: {statistics.median(r for r, _ in runs):.0f} req/s, "
              f"{statistics.median(c for _, c in runs):.1f} CPU µs/req")


if __name__ == "__main__":
    main()
