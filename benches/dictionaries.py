"""Compression dictionaries (THRUST_COMPRESSION_DICTIONARIES): the bytes a
returning visitor downloads for a new version of a 300 KB script after a
deploy, as a dcz delta against the version it holds and as br, for a small
change (1% of lines) and a large one (10%); and thrust's CPU per request
for dcz hits against br hits (wrk -t1 -c8, 5 s after 1 s of warm-up).

thrust serves the scripts from THRUST_PUBLIC_DIR; each "deploy" writes the
new version beside the old one, as Kamal's asset bridging leaves it.

With JS_FILE, a real script is version 1, and the versions 2 are it with
ten short comments inserted at even intervals (small change) or with every
tenth 1 KB block reversed (large change); without, a generated script of
similar one-line functions is used (brotli compresses that far better than
real code).

Usage: python3 benches/dictionaries.py BINARY [JS_FILE]
"""
import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, wait_for_200  # noqa: E402

SECONDS = 5


def script(version, every):
    return "".join(f"export function f{i}(x) {{ return x * {i} + {version if i % every == 7 else 1}; }}\n"
                   for i in range(6000)).encode()


def small_change(real):
    step = len(real) // 10
    parts = [real[i:i + step] for i in range(0, len(real), step)]
    return b"\n/* deployed */\n".join(parts)


def large_change(real):
    blocks = [real[i:i + 1024] for i in range(0, len(real), 1024)]
    return b"".join(block[::-1] if n % 10 == 5 else block for n, block in enumerate(blocks))


def versions(real):
    """(label, version 1, version 2) for the small and the large change."""
    if real is None:
        return [("1% of lines", script(1, 100), script(2, 100)),
                ("10% of lines", script(1, 10), script(3, 10))]
    return [("10 comments inserted", real, small_change(real)),
            ("every tenth 1 KB block reversed", real, large_change(real))]


def get(port, path, headers):
    cmd = ["curl", "-s", "-D", "-", "-o", "/dev/null", "-w", "%{size_download}", f"http://127.0.0.1:{port}{path}"]
    for h in headers:
        cmd[1:1] = ["-H", h]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    encoding = re.search(r"(?im)^content-encoding: (\S+)", out)
    return (encoding.group(1) if encoding else "identity"), int(out.strip().splitlines()[-1])


def wrk_cpu(pid, port, path, headers):
    cmd = ["wrk", "-t1", "-c8", f"-d{SECONDS}s", f"http://127.0.0.1:{port}{path}"]
    for h in headers:
        cmd += ["-H", h]
    subprocess.run(cmd[:3] + ["-d1s"] + cmd[4:], capture_output=True)
    before = cpu_seconds([pid])
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    used = cpu_seconds([pid]) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return requests / SECONDS, used * 1e6 / requests


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    binary = sys.argv[1]
    real = open(sys.argv[2], "rb").read() if len(sys.argv) == 3 else None
    work = tempfile.mkdtemp(prefix="thrust-dictionaries-")
    assets = os.path.join(work, "public/assets")
    os.makedirs(assets)
    port = free_port()
    env = dict(os.environ, HTTP_PORT=str(port), TARGET_PORT=str(free_port()),
               THRUST_PUBLIC_DIR=os.path.join(work, "public"), THRUST_COMPRESSION_DICTIONARIES="1")
    env.pop("LOG_REQUESTS", None)
    thrust = subprocess.Popen([binary, "sleep", "infinity"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    with open(os.path.join(assets, "ready.txt"), "w") as f:
        f.write("ready")
    try:
        # The child only sleeps: the public directory answers without an app.
        wait_for_200(f"http://127.0.0.1:{port}/assets/ready.txt")
        print("| change | version 2 identity bytes | br bytes | dcz bytes | dcz / br |")
        print("|---|---|---|---|---|")
        hits = {}
        for n, (label, old, new) in enumerate(versions(real)):
            old_name, new_name = f"app{n}-{1111111 + n:x}a.js", f"app{n}-{2222222 + n:x}b.js"
            with open(os.path.join(assets, old_name), "wb") as f:
                f.write(old)
            get(port, f"/assets/{old_name}", ["Accept-Encoding: br"])
            with open(os.path.join(assets, new_name), "wb") as f:
                f.write(new)
            held = base64.b64encode(hashlib.sha256(old).digest()).decode()
            asked = ["Accept-Encoding: dcz, br", f"Available-Dictionary: :{held}:"]
            deadline = time.time() + 10
            while get(port, f"/assets/{new_name}", asked)[0] != "dcz" and time.time() < deadline:
                time.sleep(0.05)
            _, br = get(port, f"/assets/{new_name}", ["Accept-Encoding: br"])
            encoding, dcz = get(port, f"/assets/{new_name}", asked)
            assert encoding == "dcz", encoding
            print(f"| {label} | {len(new):,} | {br:,} | {dcz:,} | {dcz / br:.3f} |")
            hits[label] = (new_name, asked)
        name, asked = next(iter(hits.values()))
        print()
        print("| hit | req/s | thrust CPU µs/req |")
        print("|---|---|---|")
        for label, headers in (("br", ["Accept-Encoding: br"]), ("dcz", asked)):
            rate, cpu = wrk_cpu(thrust.pid, port, f"/assets/{name}", headers)
            print(f"| {label} | {rate:,.0f} | {cpu:.1f} |")
    finally:
        thrust.terminate()
        thrust.wait()


if __name__ == "__main__":
    main()
