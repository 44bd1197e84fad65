#!/usr/bin/env python3
"""HTTP/2 over TLS request rate: thrust vs nginx with the same certificate.

Usage: benches/h2_tls_bench.py [--seconds N]
Installs nginx (Debian's nginx-light) and nghttp2-client when missing, builds
thrust in release mode, makes one self-signed P-256 certificate, then runs
h2load (4 clients, 10 streams each, N seconds) against:
  thrust  a 1 KiB cacheable response from the Python test app, served from
          thrust's cache (so the TLS + HTTP/2 path is what is measured);
  nginx   the same 1 KiB body as a static file, `http2` on its TLS listener.
Reports requests/s, CPU seconds of the server's processes per 1,000
requests, and errors, as a Markdown table.
"""
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import APP, THRUST, cpu_seconds, free_port, nginx_conf, prepare, process_tree  # noqa: E402

BODY = b"x" * 1024


def h2load(url, seconds, pids):
    before = cpu_seconds(pids)
    out = subprocess.run(["h2load", "-c", "4", "-m", "10", "-D", str(seconds), url], capture_output=True, text=True).stdout
    used = cpu_seconds(pids) - before
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    protocol = re.search(r"Application protocol: (\S+)", out)
    if not (done and rps and protocol):
        raise RuntimeError(out)
    assert protocol.group(1) == "h2", out
    succeeded = int(done.group(2))
    return {"rps": float(rps.group(1)), "cpu_per_1k": used / max(succeeded, 1) * 1000, "errors": int(done.group(3)) + int(done.group(4))}


def main():
    args, work = prepare([("h2load", "nghttp2-client"), ("nginx", "nginx-light")], "thrust-h2-bench-")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-days", "2"], check=True, capture_output=True)
    os.chmod(key, 0o644)  # nginx's workers read it as an unprivileged user
    with open(os.path.join(work, "small.txt"), "wb") as f:
        f.write(BODY)
    procs = []
    rows = []
    try:
        http, https, app = free_port(), free_port(), free_port()
        env = dict(os.environ, HTTP_PORT=str(http), HTTPS_PORT=str(https), TARGET_PORT=str(app),
                   SSL_CERT_PATH=cert, SSL_KEY_PATH=key, LOG_REQUESTS="0")
        thrust = subprocess.Popen([THRUST, "python3", APP], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(thrust)
        target = "/text?bytes=1024&h_Cache_Control=public,max-age=3600"
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{app}/").read()
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run(["curl", "-sk", "--http2", f"https://localhost:{https}{target}", "-o", "/dev/null"], check=True)
        time.sleep(0.5)

        nginx_port = free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(work, NGINX_SERVERS.format(work=work, port=nginx_port, cert=cert, key=key)))
        nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(nginx)
        time.sleep(1)
        rows.append(("thrust (cache hit)", h2load(f"https://127.0.0.1:{https}{target}", args.seconds, [thrust.pid])))
        rows.append(("nginx (static file)", h2load(f"https://127.0.0.1:{nginx_port}/small.txt", args.seconds, process_tree(nginx.pid))))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    nginx_rps = rows[-1][1]["rps"]
    print(f"h2 over TLS 1.3, 1 KiB response; h2load -c4 -m10 -D{args.seconds}; {os.cpu_count()} CPUs")
    print()
    print("| server | req/s | CPU s / 1k req | errors | vs nginx |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['rps']:.0f} | {r['cpu_per_1k']:.3f} | {r['errors']} | {r['rps'] / nginx_rps:.2f}x |")


NGINX_SERVERS = """
    http2_max_requests 1000000;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {work};
    }}
"""

if __name__ == "__main__":
    sys.exit(main())
