"""A deploy's first burst: CLIENTS concurrent first requests for one cold
fingerprinted script of SIZE_KB (Accept-Encoding: br, gzip), the app
naming the file with X-Sendfile (tests/apps/app.py, cacheable for an
hour), for one or more thrust binaries: how many requests reached the app,
thrust's CPU seconds for the burst, and the same burst again warm.

Usage: python3 benches/cold_burst.py BINARY [BINARY ...]   (CLIENTS=500, SIZE_KB=400)
"""
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, ensure_tools, free_port, wait_for_200  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = int(os.environ.get("CLIENTS", "500"))
SIZE_KB = int(os.environ.get("SIZE_KB", "400"))


def script_text(size):
    """Script-like text that compresses about as a real bundle does."""
    rng = random.Random(7)
    words = ["function", "return", "const", "let", "this", "props", "state", "render", "value", "index",
             "element", "document", "window", "undefined", "null", "true", "false", "length", "push", "map"]
    out = []
    while sum(len(p) for p in out) < size:
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        out.append(f"{rng.choice(words)} {name}{rng.randint(0, 999)} = {rng.choice(words)}({name}, {rng.random():.4f});\n")
    return "".join(out)[:size].encode()


def burst(url):
    out = subprocess.run(["h2load", "--h1", f"-n{CLIENTS}", f"-c{CLIENTS}", "-H", "Accept-Encoding: br, gzip", url],
                         capture_output=True, text=True)
    ok = f"{CLIENTS} succeeded" in out.stdout
    return ok


def measure(binary, work, asset):
    port, app_port = free_port(), free_port()
    app_log = os.path.join(work, f"app-{port}.log")
    env = dict(os.environ, HTTP_PORT=str(port), TARGET_PORT=str(app_port), APP_LOG=app_log, LOG_REQUESTS="0")
    front = subprocess.Popen([binary, "python3", os.path.join(ROOT, "tests/apps/app.py")], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_200(f"http://127.0.0.1:{port}/up")
        url = (f"http://127.0.0.1:{port}/sendfile?path={asset}&type=text/javascript"
               f"&h_Cache_Control=public,max-age=3600")
        results = []
        for label in ("cold", "warm"):
            before_cpu = cpu_seconds([front.pid])
            before_app = app_requests(app_log)
            ok = burst(url)
            time.sleep(0.5)  # stores finish off the I/O threads
            results.append(f"{label}: {app_requests(app_log) - before_app} requests at the app, "
                           f"{cpu_seconds([front.pid]) - before_cpu:.2f} CPU s{'' if ok else ' (some failed)'}")
        print(f"{binary}: " + "; ".join(results), flush=True)
    finally:
        front.terminate()
        front.wait()


def app_requests(log):
    try:
        with open(log) as f:
            return sum(1 for line in f if '"/sendfile"' in line)
    except OSError:
        return 0


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    ensure_tools([("h2load", "nghttp2-client")])
    with tempfile.TemporaryDirectory(prefix="thrust-cold-burst-") as work:
        asset = os.path.join(work, "application-3f2a9c1d.js")
        with open(asset, "wb") as f:
            f.write(script_text(SIZE_KB * 1000))
        for binary in binaries:
            measure(binary, work, asset)


if __name__ == "__main__":
    main()
