"""Memory under a flood of slow clients: COUNT connections that each send
HEAD_KIB KiB of a request head and never finish it (a slowloris that fills
the head buffer), for one or more thrust binaries and nginx as the front,
in front of the suite's nginx app.

For each front: RSS once it has answered one request, RSS with the COUNT
connections holding their unfinished heads (and how many of them the front
kept open), and what a normal request gets meanwhile.
nginx is given room for the same heads (large_client_header_buffers 4 64k:
the 64 KiB thrust accepts); with its default (4 8k) it would refuse them.

With CGROUP_MIB set (root, a cgroup v1 or v2 memory controller), each front
runs in a fresh memory cgroup of that size, as in a container with that
limit, and the cgroup's peak and whether the kernel killed the front are
reported too (thrust sizes its default connection limit from that limit).

Usage: python3 benches/head_flood.py BINARY [BINARY ...]
       (COUNT=5000, HEAD_KIB=60, HOLD=3 seconds, CGROUP_MIB unset by default)
"""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, process_tree, rss_kib, wait_for_200  # noqa: E402
import suite  # noqa: E402

COUNT = int(os.environ.get("COUNT", "5000"))
HEAD_KIB = int(os.environ.get("HEAD_KIB", "60"))
HOLD = float(os.environ.get("HOLD", "3"))
CGROUP_MIB = int(os.environ.get("CGROUP_MIB", "0"))


class MemoryCgroup:
    """A memory cgroup of CGROUP_MIB MiB (v2 if mounted alone, else v1)."""

    def __init__(self, name):
        v2 = "/sys/fs/cgroup/cgroup.controllers"
        if os.path.exists(v2):
            self.path, self.limit_file, self.peak_file = f"/sys/fs/cgroup/{name}", "memory.max", "memory.peak"
            self.events = "memory.events"
        else:
            self.path = f"/sys/fs/cgroup/memory/{name}"
            self.limit_file, self.peak_file, self.events = ("memory.limit_in_bytes", "memory.max_usage_in_bytes",
                                                            "memory.oom_control")
        os.makedirs(self.path, exist_ok=True)
        with open(f"{self.path}/{self.limit_file}", "w") as f:
            f.write(str(CGROUP_MIB << 20))

    def enter(self):
        """For Popen's preexec_fn: the child joins the cgroup."""
        with open(f"{self.path}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def peak_mib(self):
        try:
            with open(f"{self.path}/{self.peak_file}") as f:
                return int(f.read()) / (1 << 20)
        except OSError:
            return float("nan")

    def remove(self):
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def open_slow_heads(port, count):
    """`count` connections, each holding HEAD_KIB KiB of an unfinished head."""
    filler = b"a" * (HEAD_KIB * 1024 - 200)
    head = b"GET /dynamic HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + filler  # no line end: never finished
    conns = []
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            try:
                s.send(head)
            except OSError:
                pass
            conns.append(s)
        except OSError:
            break
    return conns


def normal_request(port):
    """What a normal request gets meanwhile: its status line, or why none."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /dynamic HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            line = s.recv(64).split(b"\r\n")[0].decode(errors="replace")
            return line or "closed without an answer"
    except OSError as e:
        return f"no answer ({e.strerror or e})"


def measure(name, cmd, env, port, pids_of):
    cgroup = MemoryCgroup(f"thrust-head-flood-{os.getpid()}") if CGROUP_MIB else None
    front = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=cgroup.enter if cgroup else None)
    conns = []
    try:
        wait_for_200(f"http://127.0.0.1:{port}/dynamic")
        time.sleep(0.3)
        pids = pids_of(front)
        before = rss_kib(pids)
        conns = open_slow_heads(port, COUNT)
        time.sleep(HOLD)
        alive = front.poll() is None
        held = rss_kib(pids) if alive else float("nan")
        served = normal_request(port)
        kept = suite.still_open(conns)
        line = (f"{name}: RSS {before / 1024:.1f} MiB before, {held / 1024:.1f} MiB with {COUNT} slow heads of "
                f"{HEAD_KIB} KiB ({kept} kept open; {(held - before) / max(kept, 1):.1f} KiB each kept); "
                f"a normal request meanwhile: {served}")
        if cgroup:
            line += (f"; cgroup of {CGROUP_MIB} MiB: peak {cgroup.peak_mib():.1f} MiB, front "
                     f"{'alive' if alive else 'KILLED (exit %s)' % front.returncode}")
        print(line, flush=True)
    finally:
        for s in conns:
            s.close()
        front.terminate()
        front.wait()
        if cgroup:
            time.sleep(0.2)
            cgroup.remove()


def main():
    binaries, bench = suite.comparison("thrust-head-flood-", __doc__)
    # Room for the heads in nginx too (it allocates them as they arrive).
    conf = f"{bench.work}/front.conf"
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("http {", "http {\n    large_client_header_buffers 4 64k;", 1))
    try:
        for _ in range(int(os.environ.get("ROUNDS", "1"))):
            for binary in binaries:
                port = free_port()
                env = bench.thrust_env(HTTP_PORT=port)
                measure(binary, [binary, "sleep", "infinity"], env, port, lambda p: [p.pid])
            nginx = ["nginx", "-e", f"{bench.work}/front-error.log", "-c", conf, "-g", "daemon off;"]
            measure("nginx", nginx, None, bench.ports["HTTP_PORT"], lambda p: process_tree(p.pid))
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
