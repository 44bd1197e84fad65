"""Compression dictionaries on the Rails path: Debian's Puma with
ActionDispatch::Static behind Rack::Sendfile (tests/apps/public_site.ru),
assets precompressed as Rails leaves them (`.br` at quality 11 and `.gz`
beside each file), thrust with THRUST_COMPRESSION_DICTIONARIES=1 and no
THRUST_PUBLIC_DIR: every asset is a file Rails names.

1. Bytes a returning visitor downloads for version 2 of an asset after a
   deploy, holding version 1: the dcz delta thrust sends against the br
   file Rails sends without dictionaries. For the demo's stylesheet
   (demo/public/assets/application-8e3d1dde.css, with a rule added) and,
   with JS_FILE, a real script (ten short comments inserted).
2. The cost of a deploy of DEPLOY scripts (default 50; JS_FILE's bytes, or
   a generated 300 KB script, each with a line of its own): every version
   1 fetched and stored, then version 2 of each written beside it and
   fetched by a returning visitor holding version 1, one after another.
   thrust's CPU seconds and the wall time of the 50 version-2 requests
   (their learning, deltas and stores included), with dictionaries on and
   off, in turn.

Usage: python3 benches/dictionaries_rails.py BINARY [JS_FILE]
"""
import base64
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, ensure_tools, free_port, wait_for_200  # noqa: E402
from dictionaries import get  # noqa: E402  (Content-Encoding and bytes of a GET)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = int(os.environ.get("DEPLOY", "50"))


def write_asset(assets, name, body):
    """`name` and its .br and .gz siblings, as `rails assets:precompile` leaves them."""
    path = os.path.join(assets, name)
    with open(path, "wb") as f:
        f.write(body)
    subprocess.run(["brotli", "-f", "-q", "11", "-o", path + ".br", path], check=True)
    with open(path + ".gz", "wb") as f:
        f.write(gzip.compress(body, 9))


def holding(body):
    held = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return ["Accept-Encoding: dcz, br, gzip", f"Available-Dictionary: :{held}:"]


class Site:
    """thrust in front of Puma serving a fresh public/ directory."""

    def __init__(self, binary, dictionaries):
        self.work = tempfile.mkdtemp(prefix="thrust-dictionaries-rails-")
        self.assets = os.path.join(self.work, "public/assets")
        os.makedirs(self.assets)
        self.port = free_port()
        env = dict(os.environ, HTTP_PORT=str(self.port), TARGET_PORT=str(free_port()),
                   PUBLIC_ROOT=os.path.join(self.work, "public"),
                   THRUST_COMPRESSION_DICTIONARIES="1" if dictionaries else "0")
        env.pop("LOG_REQUESTS", None)
        command = ["puma", "-C", os.path.join(ROOT, "demo/puma.rb"), os.path.join(ROOT, "tests/apps/public_site.ru")]
        self.thrust = subprocess.Popen([binary] + command, env=env, cwd=self.work,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_200(f"http://127.0.0.1:{self.port}/up")

    def close(self):
        self.thrust.terminate()
        self.thrust.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def downloads(binary, label, name, old, new):
    site = Site(binary, True)
    try:
        write_asset(site.assets, name.format(1), old)
        get(site.port, "/assets/" + name.format(1), ["Accept-Encoding: br"])
        write_asset(site.assets, name.format(2), new)
        encoding, dcz = get(site.port, "/assets/" + name.format(2), holding(old))
        assert encoding == "dcz", encoding
        _, br = get(site.port, "/assets/" + name.format(2), ["Accept-Encoding: br"])
        print(f"| {label} | {len(new):,} | {br:,} | {dcz:,} | {dcz / br:.3f} |")
    finally:
        site.close()


def deploy(binary, dictionaries, base):
    """CPU seconds and wall seconds of DEPLOY returning visitors' requests for version 2."""
    site = Site(binary, dictionaries)
    try:
        versions = []
        for i in range(DEPLOY):
            v1 = base + f"\n/* asset {i} */\n".encode()
            v2 = v1.replace(b"\n", b"\n/* deployed */\n", 10)
            versions.append((f"app{i}-{0x10000000 + i:08x}.js", f"app{i}-{0x20000000 + i:08x}.js", v1, v2))
            write_asset(site.assets, versions[-1][0], v1)
            get(site.port, "/assets/" + versions[-1][0], ["Accept-Encoding: br"])
        time.sleep(2)  # version 1's stores done
        for _, new, _, v2 in versions:
            write_asset(site.assets, new, v2)
        before, started = cpu_seconds([site.thrust.pid]), time.perf_counter()
        encodings = [get(site.port, "/assets/" + new, holding(v1))[0] for _, new, v1, _ in versions]
        wall = time.perf_counter() - started
        time.sleep(2)  # the stores started by them
        cpu = cpu_seconds([site.thrust.pid]) - before
        return cpu, wall, encodings.count("dcz")
    finally:
        site.close()


def generated():
    return "".join(f"export function f{i}(x) {{ return x * {i} + 1; }}\n" for i in range(6000)).encode()


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    ensure_tools([("brotli", "brotli"), ("puma", "puma"), ("curl", "curl")])
    binary = os.path.abspath(sys.argv[1])
    real = open(sys.argv[2], "rb").read() if len(sys.argv) == 3 else None
    print("| asset | version 2 identity bytes | br bytes (Rails' .br, q11) | dcz bytes | dcz / br |")
    print("|---|---|---|---|---|")
    css = open(os.path.join(ROOT, "demo/public/assets/application-8e3d1dde.css"), "rb").read()
    downloads(binary, "the demo's stylesheet, a rule added", "application-{}a1b2c3d.css", css,
              css + b"\n.notice { color: green; }\n")
    if real is not None:
        downloads(binary, "JS_FILE, ten comments inserted", "bundle-{}f00d1e5.js", real,
                  real.replace(b"\n", b"\n/* deployed */\n", 10))
    base = real if real is not None else generated()
    print()
    print(f"| deploy of {DEPLOY} scripts of {len(base):,} bytes | thrust CPU s | wall s | answered as dcz |")
    print("|---|---|---|---|")
    for dictionaries in (False, True, False, True):
        cpu, wall, dcz = deploy(binary, dictionaries, base)
        print(f"| dictionaries {'on' if dictionaries else 'off'} | {cpu:.2f} | {wall:.2f} | {dcz} |")


if __name__ == "__main__":
    main()
