#!/usr/bin/env python3
"""Start-up time and idle memory of thrust (SPEC §12: listening < 10 ms, idle RSS <= 10 MiB).

Usage: benches/startup_and_idle.py [path/to/thrust]   (default: target/release/thrust)

Start-up: time from spawning thrust to its HTTP port accepting a connection,
over 30 runs (the child is `sleep`, so only thrust's own start is measured).
Idle RSS: VmRSS of thrust after it proxied 1,000 requests to the Python test
app and sat idle for a second.
"""
import os
import socket
import statistics
import subprocess
import sys
import time
import http.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRUST = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/thrust")
APP = os.path.join(ROOT, "tests/apps/app.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(port, worker):
    e = dict(os.environ)
    e.update({"HTTP_PORT": str(port), "TARGET_PORT": str(worker), "LOG_REQUESTS": "0"})
    return e


def startup_ms():
    port, worker = free_port(), free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([THRUST, "sleep", "30"], env=env(port, worker),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = started + 5
        while time.perf_counter() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                return (time.perf_counter() - started) * 1000
            except OSError:
                time.sleep(0.0002)
        raise RuntimeError("thrust never listened")
    finally:
        proc.terminate()
        proc.wait(5)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_rss_kib():
    port, worker = free_port(), free_port()
    proc = subprocess.Popen([THRUST, "python3", APP], env=env(port, worker),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/up")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        fresh = rss_kib(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for i in range(1000):
            conn.request("GET", f"/?i={i}")
            conn.getresponse().read()
        conn.close()
        time.sleep(1)
        return fresh, rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    if not os.path.exists(THRUST):
        sys.exit(f"{THRUST} not found: run `cargo build --release` first")
    runs = sorted(startup_ms() for _ in range(30))
    fresh, after = idle_rss_kib()
    print(f"thrust: {THRUST}")
    print(f"start-up to listening (30 runs): median {statistics.median(runs):.2f} ms, "
          f"min {runs[0]:.2f} ms, max {runs[-1]:.2f} ms")
    print(f"idle RSS: {fresh / 1024:.1f} MiB when ready, {after / 1024:.1f} MiB after 1,000 proxied requests")


if __name__ == "__main__":
    main()
