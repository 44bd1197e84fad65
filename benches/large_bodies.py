"""100 MB bodies proxied both ways (not X-Sendfile): the front's CPU per MB
for a download and an upload, for one or more thrust binaries and nginx.

The app is tests/apps/app.py (/download?bytes=N streams N bytes in 64 KiB
writes; /upload reads the request body and answers its length). nginx
proxies with request and response buffering off, so that both fronts stream
the bodies through memory as thrust does (nginx's defaults would write them
to temporary files, which costs it more). curl is the client, its output
discarded; each front takes its turn, ROUNDS times, the order alternating.

Usage: python3 benches/large_bodies.py BINARY [BINARY ...]   (ROUNDS=3, MB=100)
       NGINX_64K=1: nginx reads bodies 64 KiB at a time (its defaults: 4 or 8 KiB
       for responses, 8 or 16 KiB for request bodies)
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import TestAppFronts, cpu_seconds, nginx_proxy_conf  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
MB = int(os.environ.get("MB", "100"))

NGINX_CONF = nginx_proxy_conf(
    connections=1024, keepalive=16, server=["client_max_body_size 0;"],
    location=['proxy_set_header Connection "";', "proxy_request_buffering off;", "proxy_buffering off;",
              "{buffers}"])


def timed(cmd, pids):
    before = cpu_seconds(pids)
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return time.monotonic() - started, cpu_seconds(pids) - before, out


def measure(port, pids, upload_file):
    size = MB * 1_000_000
    url = f"http://127.0.0.1:{port}"
    down_s, down_cpu, out = timed(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                                   f"{url}/download?bytes={size}"], pids)
    if int(out) != size:
        raise RuntimeError(f"download of {out} bytes, not {size}")
    up_s, up_cpu, out = timed(["curl", "-s", "--data-binary", f"@{upload_file}",
                               "-H", "Content-Type: application/octet-stream", f"{url}/upload"], pids)
    if out.strip() != str(size):
        raise RuntimeError(f"upload answered {out!r}, not {size}")
    return {"down_ms_per_mb": down_cpu * 1000 / MB, "down_mb_s": MB / down_s,
            "up_ms_per_mb": up_cpu * 1000 / MB, "up_mb_s": MB / up_s}


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    buffers = ("proxy_buffer_size 64k; proxy_buffers 4 64k; proxy_busy_buffers_size 128k; "
               "client_body_buffer_size 64k;") if os.environ.get("NGINX_64K") else ""
    with TestAppFronts("thrust-bodies-", binaries, NGINX_CONF, buffers=buffers) as setup:
        upload_file = os.path.join(setup.work, "upload.bin")
        with open(upload_file, "wb") as f:
            f.write(os.urandom(MB * 1_000_000))
        results = {}
        for round_ in range(ROUNDS):
            order = setup.fronts if round_ % 2 == 0 else list(reversed(setup.fronts))
            for name, port, pids in order:
                r = measure(port, pids, upload_file)
                results.setdefault(name, []).append(r)
                print(f"round {round_ + 1} {name}: download {r['down_ms_per_mb']:.2f} CPU ms/MB at "
                      f"{r['down_mb_s']:.0f} MB/s, upload {r['up_ms_per_mb']:.2f} CPU ms/MB at "
                      f"{r['up_mb_s']:.0f} MB/s", flush=True)
        for name, runs in results.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"median {name}: download {med['down_ms_per_mb']:.2f} CPU ms/MB at {med['down_mb_s']:.0f} MB/s, "
                  f"upload {med['up_ms_per_mb']:.2f} CPU ms/MB at {med['up_mb_s']:.0f} MB/s over {len(runs)} runs")


if __name__ == "__main__":
    main()
