"""On-demand TLS: time to the first byte of a name's first HTTPS request
(the app asked, the certificate ordered and issued while the handshake
waits) and of the requests after it (the certificate in memory), with
Debian's pebble as the CA on 127.0.0.1. Each request is a new curl process,
so each is a full handshake. pebble answers at once (PEBBLE_VA_NOSLEEP):
a public CA's validation adds its own seconds to the first figure.

Usage: python3 benches/on_demand_tls.py [BINARY]   (NAMES=10 names, NEXT=5 requests after each first)
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, THRUST, ensure_tools, free_port  # noqa: E402

NAMES = int(os.environ.get("NAMES", "10"))
NEXT = int(os.environ.get("NEXT", "5"))


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def pebble_certificates(work):
    """A CA, and the certificate pebble's own HTTPS listener shows (127.0.0.1)."""
    ca_key, ca, key, csr, cert = (os.path.join(work, n) for n in ("ca.key", "ca.pem", "key.pem", "csr.pem", "cert.pem"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key,
            "-out", ca, "-days", "2", "-subj", "/CN=on-demand bench CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=localhost")
    ext = os.path.join(work, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
            "-extfile", ext)
    return ca, cert, key


def start_pebble(work, http, https):
    ca, cert, key = pebble_certificates(work)
    listen, management, dns = free_port(), free_port(), free_port()
    with open(os.path.join(work, "pebble.json"), "w") as f:
        json.dump({"pebble": {"listenAddress": f"127.0.0.1:{listen}", "managementListenAddress":
                              f"127.0.0.1:{management}", "certificate": cert, "privateKey": key,
                              "httpPort": http, "tlsPort": https, "ocspResponderURL": ""}}, f)
    log = open(os.path.join(work, "pebble.log"), "w")
    procs = [
        subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
                          f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "", "-management",
                          f"127.0.0.1:{free_port()}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["pebble", "-config", os.path.join(work, "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
                         env=dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0"),
                         stdout=log, stderr=subprocess.DEVNULL),
    ]
    for _ in range(100):
        root = subprocess.run(["curl", "-s", "--cacert", ca, f"https://127.0.0.1:{management}/roots/0"],
                              capture_output=True)
        if root.stdout.startswith(b"-----BEGIN"):
            path = os.path.join(work, "root.pem")
            with open(path, "wb") as f:
                f.write(root.stdout)
            return procs, f"https://127.0.0.1:{listen}/dir", ca, path
        time.sleep(0.1)
    sys.exit("pebble did not start")


def first_byte(https, root, name):
    """Seconds to the first byte of GET / for `name`, over a new connection."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "40", "--cacert", root, "--resolve",
                          f"{name}:{https}:127.0.0.1", "-w", "%{http_code} %{time_starttransfer}",
                          f"https://{name}:{https}/"], capture_output=True, text=True).stdout.split()
    if not out or out[0] != "200":
        sys.exit(f"{name}: {out}")
    return float(out[1])


def main():
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else THRUST
    ensure_tools([("pebble", "pebble"), ("curl", "curl"), ("openssl", "openssl")])
    work = tempfile.mkdtemp(prefix="thrust-on-demand-")
    http, https = free_port(), free_port()
    procs, directory, ca, root = start_pebble(work, http, https)
    env = dict(os.environ, HTTP_PORT=str(http), HTTPS_PORT=str(https), TARGET_PORT=str(free_port()),
               ACME_DIRECTORY=directory, SSL_CERT_FILE=ca, STORAGE_PATH=os.path.join(work, "storage"),
               THRUST_ON_DEMAND_TLS_ASK="/thrust/domains", ALLOWED_DOMAINS=".bench.test",
               THRUST_ON_DEMAND_TLS_PER_MINUTE="1000", LOG_REQUESTS="0")
    thrust = subprocess.Popen([binary, "python3", os.path.join(ROOT, "tests/apps/app.py")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(thrust)
    try:
        for _ in range(100):
            if subprocess.run(["curl", "-fs", "-o", "/dev/null", f"http://127.0.0.1:{http}/up"]).returncode == 0:
                break
            time.sleep(0.1)
        firsts, nexts = [], []
        for i in range(NAMES):
            name = f"site{i}.bench.test"
            firsts.append(first_byte(https, root, name))
            nexts += [first_byte(https, root, name) for _ in range(NEXT)]
        ms = lambda values: f"{statistics.median(values) * 1000:.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"  # noqa: E731
        print("| on-demand TLS, pebble on 127.0.0.1 | time to first byte, median |")
        print("|---|---|")
        print(f"| a name's first request ({NAMES} names: ask, order, validation, issuance) | {ms(firsts)} |")
        print(f"| the requests after it ({NAMES * NEXT}, a full handshake each) | {ms(nexts)} |")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
