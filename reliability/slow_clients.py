"""Slow and idle clients: 1,000 slowloris connections (a request head sent
one byte every 2 s) and 1,000 idle keep-alive connections, while one normal
client requests pages. The normal client's p99 must stay within 2x of its
p99 without them; no file descriptor may leak (thrust's count before and
after); the slow heads must be cut at HTTP_READ_TIMEOUT.

Usage: python3 reliability/slow_clients.py [--slow 1000] [--idle 1000] [--requests 2000]
"""
import argparse
import http.client
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benches"))
from common import ASSET, Thrust, percentile, prepare  # noqa: E402
from suite import still_open  # noqa: E402

READ_TIMEOUT = 20  # HTTP_READ_TIMEOUT for this run


def latencies(port, count):
    """Milliseconds of `count` requests on one keep-alive connection,
    alternating a proxied page and a cached asset."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for i in range(count):
        started = time.perf_counter()
        conn.request("GET", "/" if i % 2 == 0 else ASSET)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        out.append((time.perf_counter() - started) * 1000)
    conn.close()
    return out


def slowloris(port, count, stop, cut):
    """Sends heads one byte at a time, each connection in turn, every 2 s;
    `cut` collects when the server closed each one."""
    head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    started = time.time()
    sent = 0
    while not stop.is_set() and socks:
        for s in list(socks):
            try:
                s.send(head[sent % len(head):sent % len(head) + 1])
                if s.recv(1) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                cut.append(time.time() - started)
                socks.remove(s)
                s.close()
        sent += 1
        stop.wait(2)
    for s in socks:
        s.close()


def idle_connections(port, count):
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET " + ASSET.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        socks.append(s)
    for s in socks:
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
    return socks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    prepare()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    thrust = Thrust(HTTP_READ_TIMEOUT=READ_TIMEOUT)
    try:
        thrust.wait_ready()
        latencies(thrust.port, 200)  # warm-up: Puma's threads, the asset cached
        time.sleep(0.5)
        fds_before = thrust.fds()
        quiet = latencies(thrust.port, args.requests)

        stop, cut = threading.Event(), []
        loris = threading.Thread(target=slowloris, args=(thrust.port, args.slow, stop, cut))
        loris.start()
        idle = idle_connections(thrust.port, args.idle)
        time.sleep(2)
        fds_loaded = thrust.fds()
        loaded_started = time.time()
        loaded = latencies(thrust.port, args.requests)
        loaded_s = time.time() - loaded_started
        # The slow heads are cut at HTTP_READ_TIMEOUT (the client keeps
        # sending a byte every 2 s until then).
        deadline = time.time() + READ_TIMEOUT + 10
        while len(cut) < args.slow and time.time() < deadline:
            time.sleep(0.5)
        stop.set()
        loris.join()
        idle_open = still_open(idle)
        for s in idle:
            s.close()
        time.sleep(2)
        fds_after = thrust.fds()

        q99, l99 = percentile(quiet, 99), percentile(loaded, 99)
        print(f"normal client, {args.requests} requests alone: p50 {percentile(quiet, 50):.2f} ms, p99 {q99:.2f} ms")
        print(f"with {args.slow} slowloris and {args.idle} idle keep-alive connections: "
              f"p50 {percentile(loaded, 50):.2f} ms, p99 {l99:.2f} ms ({l99 / q99:.2f}x; goal ≤ 2x), "
              f"over {loaded_s:.1f} s")
        cut_times = sorted(cut)
        print(f"slowloris connections cut by thrust: {len(cut)} of {args.slow}"
              + (f", {cut_times[0]:.0f}–{cut_times[-1]:.0f} s after they started (HTTP_READ_TIMEOUT={READ_TIMEOUT})"
                 if cut_times else ""))
        print(f"idle keep-alive connections still open at the end: {idle_open} of {args.idle} (HTTP_IDLE_TIMEOUT 60 s)")
        print(f"thrust's file descriptors: {fds_before} before, {fds_loaded} with the clients, "
              f"{fds_after} 2 s after they all closed")
        ok = l99 <= 2 * q99 and len(cut) == args.slow and fds_after <= fds_before + 2
        sys.exit(0 if ok else 1)
    finally:
        thrust.stop()


if __name__ == "__main__":
    main()
