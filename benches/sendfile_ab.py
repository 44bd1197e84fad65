"""CPU per X-Sendfile answer (the suite's 1 MiB file) for one or more thrust
binaries side by side (alternating), in front of the suite's nginx app.

Usage: python3 benches/sendfile_ab.py BINARY [BINARY ...]   (ROUNDS=2 by default)
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, wait_for_200  # noqa: E402
import suite  # noqa: E402

SECONDS = 4


def measure(bench, binary):
    port = free_port()
    thrust = subprocess.Popen([binary, "sleep", "infinity"], env=bench.thrust_env(HTTP_PORT=port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/files/1m.bin"
        wait_for_200(url)
        subprocess.run(["wrk", "-t1", "-c8", "-d1s", url], capture_output=True)  # warm-up
        before = cpu_seconds([thrust.pid])
        out = subprocess.run(["wrk", "-t1", "-c8", f"-d{SECONDS}s", url], capture_output=True, text=True).stdout
        used = cpu_seconds([thrust.pid]) - before
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        return requests / SECONDS, used * 1e3 / requests
    finally:
        thrust.terminate()
        thrust.wait()


def main():
    binaries, bench = suite.comparison("thrust-sendfile-", __doc__)
    try:
        for _ in range(int(os.environ.get("ROUNDS", "2"))):
            for binary in binaries:
                rate, cpu = measure(bench, binary)
                print(f"{binary}: {rate:.0f} files/s, {cpu:.3f} CPU ms per file", flush=True)
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
