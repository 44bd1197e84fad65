"""Soak: mixed load for a long time, with thrust's RSS and open file
descriptors sampled every 10 s; both must be flat after warm-up.

The load, from threads of this script: proxied pages; cacheable assets
spread over 2,000 URLs while the cache holds about 100 of them (entries are
stored and evicted all the time); event streams; WebSocket echoes; new TLS
connections, each a full handshake. thrust fronts the test app
(tests/apps/app.py) with a self-signed certificate on its HTTPS port.

Flat means: after warm-up (a fifth of the run), the highest RSS sampled in
the second half of the rest is within 20% (and 8 MiB) of the highest in the
first half, and the last descriptor count within 20 of the one at the end of
warm-up. Peaks are compared, not single samples: RSS swings by several MiB
from one sample to the next while the cache stores and evicts, and a leak
shows as peaks that keep rising. Requests that fail are counted; the goal is
none.

With --rate, the request and handshake threads share that many requests a
second between them, evenly; without it they send as fast as thrust
answers. scripts/test paces its two-minute soak so that the packaging
checks beside it get a core: the soak checks memory and failures, not speed.

Usage: python3 reliability/soak.py [--minutes 30] [--rate REQUESTS_PER_SECOND]
"""
import argparse
import base64
import http.client
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TEST_APP, Thrust, free_port, prepare  # noqa: E402

ASSET_URLS = 2000
ASSET_BYTES = 10_000


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {}
        self.failed = {}

    def add(self, kind, ok, why=""):
        with self.lock:
            table = self.ok if ok else self.failed
            key = kind if ok else f"{kind}: {why}"
            table[key] = table.get(key, 0) + 1


class Pace:
    """Spaces one thread's requests `interval` seconds apart (none: no wait)."""

    def __init__(self, interval):
        self.interval = interval
        self.due = time.monotonic()

    def wait(self, stop):
        if self.interval is None:
            return
        self.due += self.interval
        stop.wait(max(0.0, self.due - time.monotonic()))


def heap_in_use_kib(thrust):
    """The allocator's bytes in use (thrust_heap_bytes on /metrics), in KiB."""
    conn = http.client.HTTPConnection("127.0.0.1", thrust.metrics_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith('thrust_heap_bytes{state="in_use"}'):
                return float(line.split()[-1]) / 1024
    finally:
        conn.close()
    return 0.0


def keep_alive_requests(kind, next_request):
    """A load thread: requests from `next_request()` (a path and headers)
    on one keep-alive connection, opened again after a failure."""
    def run(port, stop, counts, pace):
        conn = None
        while not stop.is_set():
            pace.wait(stop)
            path, headers = next_request()
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                r.read()
                counts.add(kind, r.status == 200, r.status)
            except (OSError, http.client.HTTPException) as e:
                counts.add(kind, False, type(e).__name__)
                conn = None
    return run


pages = keep_alive_requests("page", lambda: ("/echo", {}))
assets = keep_alive_requests("asset", lambda: (
    f"/text?bytes={ASSET_BYTES}&type=text/javascript&h_cache_control=public,max-age=3600"
    f"&n={random.randrange(ASSET_URLS)}",
    {"Accept-Encoding": random.choice(["gzip", "br", "zstd", "identity"])}))


def events(port, stop, counts, _pace):
    """Streams of five events 0.2 s apart: paced by the app."""
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/sse?n=5&interval=0.2")
            body = conn.getresponse().read()
            conn.close()
            counts.add("event stream", body.count(b"data: event") == 5, "events missing")
        except (OSError, http.client.HTTPException) as e:
            counts.add("event stream", False, type(e).__name__)


def websockets(port, stop, counts, _pace):
    """Five echoes per connection, 50 ms between connections."""
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(f"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
            ok = head.startswith(b"HTTP/1.1 101")
            for i in range(5):
                payload = f"message {i}".encode()
                mask = os.urandom(4)
                s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[j % 4] for j, b in enumerate(payload)))
                echo = s.recv(4096)
                ok = ok and echo[2:] == payload
            s.sendall(bytes([0x88, 0x80]) + os.urandom(4))
            s.close()
            counts.add("websocket", ok, "echo differs")
        except OSError as e:
            counts.add("websocket", False, type(e).__name__)
        time.sleep(0.05)


def handshakes(port, stop, counts, pace):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while not stop.is_set():
        pace.wait(stop)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
            counts.add("TLS handshake + request", data.startswith(b"HTTP/1.1 200"), data[:12])
        except (OSError, ssl.SSLError) as e:
            counts.add("TLS handshake + request", False, type(e).__name__)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, help="requests a second over all request threads")
    args = parser.parse_args()
    prepare()
    cert_dir = subprocess.run(["mktemp", "-d"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{cert_dir}/key.pem", "-out", f"{cert_dir}/cert.pem", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-days", "2"], check=True, capture_output=True)
    # thrust with its defaults (its request log read and thrown away) runs
    # the app; a second thrust, for TLS, fronts the same app (with TLS on,
    # the HTTP port redirects), as benches/suite.py does.
    # Both serve /metrics, for the allocator's bytes in use beside RSS.
    thrust = Thrust(TEST_APP, keep_log=False, CACHE_SIZE=ASSET_BYTES * 100, THRUST_METRICS_PORT=free_port())
    tls = Thrust(["sleep", "infinity"], keep_log=False, TARGET_PORT=thrust.target_port,
                 HTTPS_PORT=free_port(), SSL_CERT_PATH=f"{cert_dir}/cert.pem", SSL_KEY_PATH=f"{cert_dir}/key.pem",
                 THRUST_METRICS_PORT=free_port())
    try:
        thrust.wait_ready()
        tls.wait_ready()
        stop, counts = threading.Event(), Counts()
        loads = [(pages, thrust.port)] * 3 + [(assets, thrust.port)] * 3 + [(events, thrust.port)] * 2 \
            + [(websockets, thrust.port)] + [(handshakes, tls.https_port)] * 2
        paced = sum(1 for f, _ in loads if f not in (events, websockets))
        interval = paced / args.rate if args.rate else None
        threads = [threading.Thread(target=f, args=(port, stop, counts, Pace(interval))) for f, port in loads]
        for t in threads:
            t.start()
        samples = []
        started = time.time()
        end = started + args.minutes * 60
        def sample():
            samples.append((time.time() - started, thrust.rss_kib(), thrust.fds(), tls.rss_kib(), tls.fds(),
                            heap_in_use_kib(thrust), heap_in_use_kib(tls)))
            at, rss, fds, tls_rss, tls_fds, heap, tls_heap = samples[-1]
            print(f"{at:6.0f} s  thrust: RSS {rss / 1024:6.1f} MiB, heap in use {heap / 1024:5.1f} MiB, fds {fds}   "
                  f"TLS thrust: RSS {tls_rss / 1024:5.1f} MiB, heap in use {tls_heap / 1024:4.1f} MiB, "
                  f"fds {tls_fds}", flush=True)

        while time.time() < end:
            sample()
            time.sleep(min(10, max(0, end - time.time())))
        sample()
        stop.set()
        for t in threads:
            t.join(30)
        warm = next(s for s in samples if s[0] >= args.minutes * 60 / 5)
        last = samples[-1]
        settled = samples[samples.index(warm):]
        early, late = settled[:len(settled) // 2], settled[len(settled) // 2:]
        flat = True
        for name, rss_at, fds_at, heap_at in (("thrust", 1, 2, 5), ("TLS thrust", 3, 4, 6)):
            early_peak = max(s[rss_at] for s in early)
            late_peak = max(s[rss_at] for s in late)
            early_heap = sum(s[heap_at] for s in early) / len(early)
            late_heap = sum(s[heap_at] for s in late) / len(late)
            print(f"\n{name}: peak RSS {early_peak / 1024:.1f} MiB from {early[0][0]:.0f} s to {early[-1][0]:.0f} s, "
                  f"{late_peak / 1024:.1f} MiB from {late[0][0]:.0f} s to {late[-1][0]:.0f} s; "
                  f"mean heap in use {early_heap / 1024:.1f} then {late_heap / 1024:.1f} MiB; "
                  f"fds {warm[fds_at]} after warm-up, {last[fds_at]} at the end", end="")
            flat = flat and late_peak <= max(early_peak * 1.2, early_peak + 8 * 1024) \
                and abs(last[fds_at] - warm[fds_at]) <= 20
        print("\nanswered: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.ok.items())))
        print("failed: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.failed.items())) or "none"))
        print(f"flat: {'yes' if flat else 'NO'}")
        sys.exit(0 if flat and not counts.failed else 1)
    finally:
        thrust.stop()
        tls.stop()


if __name__ == "__main__":
    main()
