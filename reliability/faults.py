"""Faults: what a client sees, what thrust's log says, and that thrust goes
on serving everyone else, for each of:

1. an app worker killed mid-response under load (Puma in cluster mode, a
   worker SIGKILLed while pages and event streams are in flight);
2. an app that stops reading a request body;
3. an app that resets the connection mid-body;
4. an app slower than THRUST_UPSTREAM_TIMEOUT;
5. a file sent for the app truncated, then removed, while it streams;
6. a STORAGE_PATH thrust cannot write.

While each fault runs, a bystander client requests a cached asset and a
page over and over; every one of its requests must succeed.

Usage: python3 reliability/faults.py
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ASSET, PUMA_DEMO, TEST_APP, THRUST, Thrust, free_port, get, prepare  # noqa: E402

RESULTS = []


class Bystander:
    """Requests `paths` in turn on its own connection until stopped; counts
    what did not come back 200."""

    def __init__(self, port, paths):
        self.port, self.paths = port, paths
        self.done = self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                status, _ = get(self.port, self.paths[i % len(self.paths)], timeout=5)
                self.failed += status != 200
            except OSError:
                self.failed += 1
            self.done += 1
            i += 1
            time.sleep(0.01)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return f"{self.done - self.failed} of {self.done} bystander requests answered 200"


def log_lines(thrust, since=0):
    out = []
    for line in thrust.text().splitlines()[since:]:
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("level") in ("WARN", "ERROR"):
                out.append(f"{entry['level']} {entry['msg']}" + (f" ({entry['error']})" if "error" in entry else ""))
    return sorted(set(out))


def report(name, client, thrust, since, bystander):
    RESULTS.append((name, client, log_lines(thrust, since), bystander))
    print(f"\n{name}\n  client: {client}\n  log: {'; '.join(log_lines(thrust, since)) or '(nothing at warn)'}\n"
          f"  {bystander}", flush=True)


def raw_response(port, request, read_timeout=15):
    """Sends `request`; returns (status line, body bytes, how it ended, seconds)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(read_timeout)
    started = time.time()
    s.sendall(request)
    data = b""
    ended = "closed by thrust"
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        ended = f"no end after {read_timeout} s"
    except ConnectionResetError:
        ended = "reset by thrust"
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(errors="replace"), head, body, ended, time.time() - started


def worker_killed_mid_response():
    thrust = Thrust(PUMA_DEMO + ["-w", "2"])
    try:
        thrust.wait_ready()
        since = len(thrust.text().splitlines())
        bystander = Bystander(thrust.port, [ASSET])
        outcomes = {}
        lock = threading.Lock()

        def stream(path):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", thrust.port, timeout=15)
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                key = f"{response.status}" + (f", {body.count(b'data: event')} of 5 events" if path == "/events" else "")
            except http.client.IncompleteRead as e:
                key = f"stream cut ({e.partial.count(b'data: event')} events, then the connection closed)"
            except (OSError, http.client.HTTPException) as e:
                key = type(e).__name__
            with lock:
                outcomes[key] = outcomes.get(key, 0) + 1

        threads = [threading.Thread(target=stream, args=("/events" if i % 2 else "/",)) for i in range(20)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        children = lambda pid: subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,  # noqa: E731
                                              text=True).stdout.split()
        master = children(thrust.proc.pid)[0]
        for worker in children(master):
            os.kill(int(worker), signal.SIGKILL)
        for t in threads:
            t.join(30)
        hung = sum(t.is_alive() for t in threads)
        time.sleep(3)  # Puma's master starts a new worker
        after = [get(thrust.port, "/")[0] for _ in range(10)]
        report("1. app workers killed mid-response (Puma -w 2, SIGKILL to both workers under 20 requests)",
               f"{outcomes}; {hung} requests hung; after the master restarted the worker: "
               f"{after.count(200)} of 10 pages 200", thrust, since, bystander.finish())
    finally:
        thrust.stop()


def with_test_app(**env):
    thrust = Thrust(TEST_APP, **env)
    thrust.wait_ready()
    return thrust


def app_stops_reading_body():
    thrust = with_test_app(THRUST_UPSTREAM_TIMEOUT=2, HTTP_READ_TIMEOUT=60)
    try:
        since = len(thrust.text().splitlines())
        bystander = Bystander(thrust.port, [ASSET, "/"])
        s = socket.create_connection(("127.0.0.1", thrust.port))
        s.settimeout(15)
        started = time.time()
        s.sendall(b"POST /ignore-body?seconds=30 HTTP/1.1\r\nHost: t\r\nContent-Length: 200000000\r\n\r\n")

        def send_forever():
            block = b"b" * 65536
            try:
                for _ in range(3000):
                    s.sendall(block)
            except OSError:
                pass

        sender = threading.Thread(target=send_forever, daemon=True)
        sender.start()
        try:
            status = s.recv(4096).split(b"\r\n")[0].decode()
        except OSError as e:
            status = type(e).__name__
        report("2. an app that stops reading the request body (200 MB upload, THRUST_UPSTREAM_TIMEOUT=2)",
               f"{status} after {time.time() - started:.1f} s while still sending", thrust, since, bystander.finish())
        s.close()
    finally:
        thrust.stop()


def app_resets_mid_body():
    thrust = with_test_app()
    try:
        since = len(thrust.text().splitlines())
        bystander = Bystander(thrust.port, [ASSET, "/"])
        status, head, body, ended, took = raw_response(
            thrust.port, b"GET /reset-mid-body?bytes=1000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
        report("3. an app that resets the connection mid-body (1,000,000 bytes announced, 100,000 sent)",
               f"{status}, {length[0].decode() if length else 'no Content-Length'}, {len(body)} bytes, then "
               f"{ended} after {took:.1f} s", thrust, since, bystander.finish())
    finally:
        thrust.stop()


def app_too_slow():
    thrust = with_test_app(THRUST_UPSTREAM_TIMEOUT=1)
    try:
        since = len(thrust.text().splitlines())
        bystander = Bystander(thrust.port, [ASSET, "/"])
        started = time.time()
        status, _ = get(thrust.port, "/slow-head?seconds=5")
        report("4. an app slower than THRUST_UPSTREAM_TIMEOUT=1 (answers after 5 s)",
               f"{status} after {time.time() - started:.1f} s", thrust, since, bystander.finish())
    finally:
        thrust.stop()


def file_truncated_and_removed():
    folder = tempfile.mkdtemp(prefix="thrust-faults-")
    thrust = with_test_app()
    try:
        for what in ("truncated", "removed"):
            path = os.path.join(folder, f"big-{what}.bin")
            with open(path, "wb") as f:
                f.truncate(200 * 1024 * 1024)
            since = len(thrust.text().splitlines())
            bystander = Bystander(thrust.port, [ASSET, "/"])
            s = socket.create_connection(("127.0.0.1", thrust.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.settimeout(15)
            s.sendall(f"GET /sendfile?path={path}&type=application/octet-stream HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            head = data.split(b"\r\n\r\n")[0]
            received = len(data) - len(head) - 4
            announced = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")), b"0"))
            if what == "truncated":
                with open(path, "r+b") as f:
                    f.truncate(10 * 1024 * 1024)
            else:
                os.unlink(path)
            ended = "closed by thrust"
            try:
                while received < announced:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    received += len(chunk)
                if received == announced:
                    ended = "the whole file (the connection kept alive)"
            except socket.timeout:
                ended = "no end after 15 s"
            except ConnectionResetError:
                ended = "reset by thrust"
            s.close()
            lines = head.split(b"\r\n")
            length = [line.decode() for line in lines if line.lower().startswith(b"content-length")]
            report(f"5. a 200 MiB file sent for the app, {what} while it streams"
                   + (" (to 10 MiB)" if what == "truncated" else ""),
                   f"{lines[0].decode()}, {length[0] if length else 'no Content-Length'}, {received} bytes received, "
                   f"then {ended}", thrust, since, bystander.finish())
    finally:
        thrust.stop()


def storage_not_writable():
    folder = tempfile.mkdtemp(prefix="thrust-faults-")
    os.chmod(folder, 0o555)
    env = dict(os.environ, TLS_DOMAIN="app.test", STORAGE_PATH=os.path.join(folder, "certs"),
               HTTP_PORT=str(free_port()), HTTPS_PORT=str(free_port()))
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    out = subprocess.run(as_user + [THRUST, "sleep", "1"], env=env, capture_output=True, text=True, timeout=20)
    RESULTS.append(("6. STORAGE_PATH not writable", f"exit {out.returncode}: {out.stderr.strip()}", [], ""))
    print(f"\n6. STORAGE_PATH not writable (ACME on, the directory read-only for thrust's user)\n"
          f"  thrust: exit {out.returncode}, stderr: {out.stderr.strip()}\n"
          f"  (a full disk: cargo test --test acme a_full_storage_disk, which mounts a small tmpfs)", flush=True)


def main():
    prepare()
    for fault in (worker_killed_mid_response, app_stops_reading_body, app_resets_mid_body, app_too_slow,
                  file_truncated_and_removed, storage_not_writable):
        fault()


if __name__ == "__main__":
    main()
