"""Launch → first 200 for the suite's nginx app alone, and for thrust
binaries that launch that app as their child, alternating; a client polls
every 0.2 ms (thrust holds requests that arrive while the app boots).

Usage: python3 benches/startup_ab.py BINARY [BINARY ...]   (RUNS=20 by default)
"""
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port  # noqa: E402
import suite  # noqa: E402


def first_200_ms(cmd, env, url):
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < 10:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return (time.perf_counter() - started) * 1000
            except OSError:
                time.sleep(0.0002)
        raise RuntimeError(f"{cmd[0]}: no 200 within 10 s")
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    binaries, bench = suite.comparison("thrust-startup-", __doc__, with_app=False)
    app_url = f"http://127.0.0.1:{bench.ports['APP_PORT']}/dynamic"
    times = {"app alone": []}
    for _ in range(int(os.environ.get("RUNS", "20"))):
        times["app alone"].append(first_200_ms(bench.app_command(), os.environ, app_url))
        for binary in binaries:
            port = free_port()
            env = bench.thrust_env(HTTP_PORT=port)
            ms = first_200_ms([binary] + bench.app_command(), env, f"http://127.0.0.1:{port}/dynamic")
            times.setdefault(binary, []).append(ms)
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.1f} ms (min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main()
