"""New TLS connections per second, one request each, through thrust and
nginx: ECDSA P-256 and RSA 2048 certificates, TLS 1.3 and 1.2. The client
is `openssl s_time -new` (a full handshake per connection, then GET of a
small proxied page), two of them at once; the front's CPU per connection is
read from /proc. Both fronts proxy to the suite's nginx app and write their
request logs (nginx: a JSON access log as the suite's).

Usage: python3 benches/tls_handshakes.py BINARY [BINARY ...]   (SECONDS=5, ROUNDS=2)
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import NGINX_JSON_LOG, cpu_seconds, free_port, nginx_proxy_conf, process_tree  # noqa: E402
import suite  # noqa: E402

SECONDS = int(os.environ.get("SECONDS", "5"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
CLIENTS = 2

NGINX_CONF = nginx_proxy_conf(
    listen=" ssl",
    server=["ssl_certificate {cert};", "ssl_certificate_key {key};", "ssl_protocols TLSv1.2 TLSv1.3;",
            "ssl_session_cache off;", "ssl_session_tickets off;"])


def certificate(work, kind):
    cert, key = os.path.join(work, f"{kind}.crt"), os.path.join(work, f"{kind}.key")
    algorithm = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if kind == "ecdsa" \
        else ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", *algorithm, "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=app.test"], check=True, capture_output=True)
    return cert, key


def handshakes(port, version, pids):
    cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(SECONDS),
           "-www", "/dynamic", f"-{version}"]
    before = cpu_seconds(pids)
    clients = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for _ in range(CLIENTS)]
    outs = [c.communicate()[0] for c in clients]
    used = cpu_seconds(pids) - before
    total = 0
    for out in outs:
        found = re.search(r"(\d+) connections in [\d.]+ real seconds", out)
        if not found:
            raise RuntimeError(f"s_time: {out}")
        total += int(found.group(1))
    return total / SECONDS, used * 1e6 / max(total, 1)


def start_thrust(bench, binary, cert, key):
    https = free_port()
    env = bench.thrust_env(HTTP_PORT=free_port(), HTTPS_PORT=https, SSL_CERT_PATH=cert, SSL_KEY_PATH=key)
    proc = subprocess.Popen([binary, "sleep", "infinity"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    sink = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
    time.sleep(1)
    return https, [proc.pid], (proc, sink)


def start_nginx(bench, cert, key, kind):
    port = free_port()
    conf = os.path.join(bench.work, f"tls-{kind}.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(work=bench.work, app_port=bench.ports["APP_PORT"], port=port, cert=cert, key=key,
                                  log=NGINX_JSON_LOG.format(work=bench.work)))
    proc = subprocess.Popen(["nginx", "-e", os.path.join(bench.work, "tls-error.log"), "-c", conf,
                             "-g", f"daemon off; pid {bench.work}/tls-{kind}.pid;"])
    time.sleep(1)
    return port, process_tree(proc.pid), (proc, None)


def main():
    binaries, bench = suite.comparison("thrust-tls-", __doc__)
    results = {}
    try:
        for kind in ("ecdsa", "rsa"):
            cert, key = certificate(bench.work, kind)
            fronts = [(b, *start_thrust(bench, b, cert, key)) for b in binaries]
            fronts.append(("nginx", *start_nginx(bench, cert, key, kind)))
            try:
                for round_ in range(ROUNDS):
                    order = fronts if round_ % 2 == 0 else list(reversed(fronts))
                    for version in ("tls1_3", "tls1_2"):
                        for name, port, pids, _ in order:
                            rate, cpu = handshakes(port, version, pids)
                            results.setdefault((kind, version, name), []).append((rate, cpu))
                            print(f"{kind} {version} {name}: {rate:.0f} connections/s, "
                                  f"{cpu:.0f} CPU µs per connection", flush=True)
            finally:
                for _, _, _, (proc, sink) in fronts:
                    proc.terminate()
                    proc.wait()
                    if sink is not None:
                        sink.wait()
    finally:
        bench.stop()
    for (kind, version, name), runs in results.items():
        print(f"median {kind} {version} {name}: {statistics.median(r for r, _ in runs):.0f} connections/s, "
              f"{statistics.median(c for _, c in runs):.0f} CPU µs per connection over {len(runs)} runs")


if __name__ == "__main__":
    main()
