"""CPU per proxied request with request logging on and off, for one or more
thrust binaries side by side (alternating), in front of the suite's nginx app.
thrust's stdout is a pipe read by `cat`, as a container runtime reads it.

Usage: python3 benches/logging_ab.py BINARY [BINARY ...]   (ROUNDS=2 by default)
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, wait_for_200  # noqa: E402
import suite  # noqa: E402


def measure(bench, binary, log_requests):
    port = free_port()
    env = dict(os.environ, LOG_REQUESTS=log_requests, TARGET_PORT=str(bench.ports["APP_PORT"]), HTTP_PORT=str(port))
    thrust = subprocess.Popen([binary, "sleep", "infinity"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sink = subprocess.Popen(["cat"], stdin=thrust.stdout, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/dynamic"
    wait_for_200(url)
    subprocess.run(["wrk", "-t1", "-c50", "-d1s", url], capture_output=True)  # warm-up
    before = cpu_seconds([thrust.pid])
    out = subprocess.run(["wrk", "-t1", "-c50", "-d5s", url], capture_output=True, text=True).stdout
    used = cpu_seconds([thrust.pid]) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    thrust.terminate()
    thrust.wait()
    sink.wait()
    return requests / 5, used * 1e6 / requests


def main():
    binaries, bench = suite.comparison("thrust-logging-", __doc__)
    try:
        for _ in range(int(os.environ.get("ROUNDS", "2"))):
            for binary in binaries:
                for log_requests in ("1", "0"):
                    rate, cpu = measure(bench, binary, log_requests)
                    print(f"{binary} LOG_REQUESTS={log_requests}: {rate:.0f} req/s, {cpu:.1f} CPU µs/req", flush=True)
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
