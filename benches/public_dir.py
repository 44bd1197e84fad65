"""A Rails-shaped first visit through thrust and Puma, with and without
THRUST_PUBLIC_DIR: the page and its ten fingerprinted assets, fetched as a
browser does (the page, then the assets over six connections). Reports the
requests that reached Puma and the time to the last byte, median of the
visits. Each visit is to a new thrust and Puma, warmed by a request for the
page and one for a path that is not a file (Puma's first requests are slow),
with no asset fetched or cached yet; the two setups alternate.

Usage: python3 benches/public_dir.py [VISITS]   (default 10)
       PUMA_EXTRA='max_fast_inline 0' python3 benches/public_dir.py
       (PUMA_EXTRA: lines added to the Puma configuration)
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRUST = os.path.join(ROOT, "target/release/thrust")
sys.path.insert(0, os.path.join(ROOT, "benches"))
from benchlib import free_port, wait_for_200  # noqa: E402


def public_dir(path):
    """Ten fingerprinted assets, 20 to 200 KB, as a Rails app's public/assets."""
    assets = os.path.join(path, "assets")
    os.makedirs(assets)
    for i in range(10):
        size = 20_000 + i * 20_000
        with open(os.path.join(assets, f"app{i}-{0x3f2a9c00 + i:08x}.{'css' if i % 2 else 'js'}"), "w") as f:
            f.write(("/* asset %d */ " % i + "x" * 70 + "\n") * (size // 86))


def get(port, target):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", target, headers={"Host": "localhost", "Accept-Encoding": "gzip, br"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def visit(port):
    """The page, then its assets over six connections; seconds to the last byte."""
    started = time.perf_counter()
    status, page = get(port, "/")
    assert status == 200, status
    links = [line.split('"')[3] for line in page.decode().splitlines() if line.startswith("<link")]
    queue = list(links)
    lock = threading.Lock()

    def fetch():
        while True:
            with lock:
                if not queue:
                    return
                link = queue.pop()
            assert get(port, link)[0] == 200, link

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, len(links)


# Puma as a Rails 8 app's generated config/puma.rb sets it up: 3 threads.
PUMA_CONFIG = 'port ENV.fetch("PORT", 3000)\nthreads 3, 3\nworkers 0\n'


def run(public, served_by_thrust):
    port = free_port()
    env = dict(os.environ, HTTP_PORT=str(port), TARGET_PORT=str(free_port()), PUBLIC_ROOT=public, LOG_REQUESTS="1")
    if served_by_thrust:
        env["THRUST_PUBLIC_DIR"] = public
    thrust = subprocess.Popen(
        [THRUST, "puma", "-C", os.path.join(public, "..", "puma.rb"), os.path.join(ROOT, "tests/apps/public_site.ru")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_200(f"http://127.0.0.1:{port}/stats")
        for target in ("/", "/not-a-file", "/", "/not-a-file"):
            get(port, target)
        before = sum(json.loads(get(port, "/stats")[1]).values())
        seconds, assets = visit(port)
        reached = sum(json.loads(get(port, "/stats")[1]).values()) - before
        return seconds, reached, assets
    finally:
        thrust.terminate()
        thrust.wait()


def main():
    visits = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory() as work:
        public = os.path.join(work, "public")
        public_dir(public)
        with open(os.path.join(work, "puma.rb"), "w") as f:
            f.write(PUMA_CONFIG + os.environ.get("PUMA_EXTRA", "") + "\n")
        for i in range(visits):
            for served in ((False, True) if i % 2 == 0 else (True, False)):
                results[served].append(run(public, served))
    for served, runs in results.items():
        name = "THRUST_PUBLIC_DIR set" if served else "without THRUST_PUBLIC_DIR"
        ms = statistics.median(r[0] for r in runs) * 1000
        reached = statistics.median(r[1] for r in runs)
        print(f"{name}: {reached:.0f} of {runs[0][2] + 1} requests reached Puma; "
              f"last byte after {ms:.1f} ms (median of {len(runs)} first visits)")


if __name__ == "__main__":
    main()
