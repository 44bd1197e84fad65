"""New visitors during crowds, for one or more thrust binaries and nginx as
the front at the same connection limit, in front of the suite's nginx app:

- idle: 2 x LIMIT keep-alive clients each make one request and stay
  open, idle (browsers after a page load);
- heads: LIMIT + 50 connections each hold an unfinished request head, and
  the client opens a new one whenever one is closed (a slowloris that
  reconnects).

During each, VISITORS new clients arrive one after another (100 ms apart,
the first a second and a half into the crowd), each on a new connection:
how many got 200, and the 50th and 99th percentile of their time to a
whole answer (all of them, answered or not).

thrust runs with THRUST_MAX_CONNECTIONS=LIMIT; nginx with one worker and
worker_connections LIMIT + 16 (its count includes its connections to the
app).

Usage: python3 benches/crowds.py BINARY [BINARY ...]   (LIMIT=200, VISITORS=20)
"""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_for_200  # noqa: E402
import suite  # noqa: E402

LIMIT = int(os.environ.get("LIMIT", "200"))
VISITORS = int(os.environ.get("VISITORS", "20"))
REQUEST = b"GET /dynamic HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def answer_status(sock):
    """Reads one answer's status line and its head; the status, or 0."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def visit(port):
    """One new visitor: (status, seconds to the whole answer)."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /dynamic HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            status = answer_status(s)
            while s.recv(65536):
                pass
    except OSError:
        status = 0
    return status, time.perf_counter() - started


def idle_crowd(port, stop):
    held = []
    for _ in range(2 * LIMIT):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(REQUEST)
            answer_status(s)
            held.append(s)
        except OSError:
            pass
    stop.wait()
    for s in held:
        s.close()


def head_crowd(port, stop):
    head = b"GET /dynamic HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

    def opened():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head)
            s.setblocking(False)
            return s
        except OSError:
            return None

    held = [s for s in (opened() for _ in range(LIMIT + 50)) if s]
    while not stop.is_set():
        alive = []
        for s in held:
            try:
                if s.recv(1024) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            alive.append(s)
        held = alive + [s for s in (opened() for _ in range(LIMIT + 50 - len(alive))) if s]
        time.sleep(0.005)
    for s in held:
        s.close()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def measure(name, crowd, cmd, env, port):
    front = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        wait_for_200(f"http://127.0.0.1:{port}/dynamic")
        crowd_thread = threading.Thread(target=crowd, args=(port, stop))
        crowd_thread.start()
        time.sleep(1.5)
        visits = []
        for _ in range(VISITORS):
            visits.append(visit(port))
            time.sleep(0.1)
        stop.set()
        crowd_thread.join()
        served = sum(1 for status, _ in visits if status == 200)
        times = [t * 1000 for _, t in visits]
        print(f"{crowd.__name__} {name}: {served}/{VISITORS} new visitors served, "
              f"p50 {percentile(times, 50):.1f} ms, p99 {percentile(times, 99):.1f} ms", flush=True)
    finally:
        stop.set()
        front.terminate()
        front.wait()


def main():
    binaries, bench = suite.comparison("thrust-crowds-", __doc__)
    conf = f"{bench.work}/front.conf"
    with open(conf) as f:
        text = f.read()
    text = text.replace("worker_processes 2;", "worker_processes 1;")
    text = text.replace("worker_connections 8192;", f"worker_connections {LIMIT + 16};")
    with open(conf, "w") as f:
        f.write(text)
    try:
        for crowd in (idle_crowd, head_crowd):
            for binary in binaries:
                port = free_port()
                env = bench.thrust_env(HTTP_PORT=port, THRUST_MAX_CONNECTIONS=LIMIT)
                measure(binary, crowd, [binary, "sleep", "infinity"], env, port)
            nginx = ["nginx", "-e", f"{bench.work}/front-error.log", "-c", conf, "-g", "daemon off;"]
            measure("nginx", crowd, nginx, None, bench.ports["HTTP_PORT"])
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
