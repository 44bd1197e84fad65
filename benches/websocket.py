"""WebSocket echo through a front: messages per second and the front's CPU
per message, for one or more thrust binaries, nginx (proxying the upgrade,
two workers as thrust has on this machine's two CPUs, with a JSON access
log as the suite's) and `direct` (the app alone).

The app is tests/apps/app.py's /ws, which echoes every text frame. The client
(asyncio, in this script) opens CONNECTIONS WebSocket connections, and on each
sends a small masked text frame and waits for its echo, again and again, for
SECONDS; the fronts take turns, ROUNDS times, the order alternating.
The client and the app are slow Python next to the fronts: what is compared
is each front's CPU per message under the same load, and its rate.

Usage: python3 benches/websocket.py BINARY [BINARY ...]
       (CONNECTIONS=100, SECONDS=5, ROUNDS=3 by default)
"""
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, process_tree, wait_for_200  # noqa: E402

CONNECTIONS = int(os.environ.get("CONNECTIONS", "100"))
SECONDS = float(os.environ.get("SECONDS", "5"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESSAGE = b"hello, echo"

NGINX_CONF = """
worker_processes 2;
events {{ worker_connections 4096; }}
http {{
    log_format json escape=json '{{"time":"$time_iso8601","path":"$uri","status":$status,'
        '"dur":$request_time,"method":"$request_method","remote_addr":"$remote_addr"}}';
    access_log {work}/access.log json;
    upstream app {{ server 127.0.0.1:{app_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


async def echo_loop(port, deadline, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no upgrade: {head[:60]!r}")
    mask = b"\x01\x02\x03\x04"
    frame = bytes([0x81, 0x80 | len(MESSAGE)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(MESSAGE))
    while time.monotonic() < deadline:
        writer.write(frame)
        echo = await reader.readexactly(2 + len(MESSAGE))
        if echo[2:] != MESSAGE:
            raise RuntimeError(f"wrong echo {echo!r}")
        counts[0] += 1
    writer.write(bytes([0x88, 0x80]) + mask)
    writer.close()


async def load(port):
    counts = [0]
    deadline = time.monotonic() + SECONDS
    await asyncio.gather(*(echo_loop(port, deadline, counts) for _ in range(CONNECTIONS)))
    return counts[0]


def measure(name, port, pids):
    asyncio.run(load_warm(port))
    before = cpu_seconds(pids)
    started = time.monotonic()
    messages = asyncio.run(load(port))
    elapsed = time.monotonic() - started
    used = cpu_seconds(pids) - before
    return messages / elapsed, used * 1e6 / max(messages, 1)


async def load_warm(port):
    counts = [0]
    deadline = time.monotonic() + 0.5
    await asyncio.gather(*(echo_loop(port, deadline, counts) for _ in range(10)))


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    work = tempfile.mkdtemp(prefix="thrust-ws-")
    app_port = free_port()
    app = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/apps/app.py")],
                           env=dict(os.environ, PORT=str(app_port), APP_LOG=os.path.join(work, "app.log")),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fronts = []
    try:
        wait_for_200(f"http://127.0.0.1:{app_port}/")
        for binary in binaries:
            port = free_port()
            env = dict(os.environ, TARGET_PORT=str(app_port), HTTP_PORT=str(port))
            env.pop("LOG_REQUESTS", None)
            proc = subprocess.Popen([binary, "sleep", "infinity"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            sink = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
            fronts.append((binary, port, proc, [proc.pid], sink))
        port = free_port()
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(work=work, app_port=app_port, port=port))
        nginx = subprocess.Popen(["nginx", "-e", os.path.join(work, "error.log"), "-c",
                                  os.path.join(work, "nginx.conf"), "-g", f"daemon off; pid {work}/nginx.pid;"])
        time.sleep(0.5)
        fronts.append(("nginx", port, nginx, process_tree(nginx.pid), None))
        # The app alone: its rate; the front's CPU is none.
        fronts.append(("direct", app_port, None, [], None))
        for _, port, _, _, _ in fronts:
            wait_for_200(f"http://127.0.0.1:{port}/")
        results = {}
        for round_ in range(ROUNDS):
            order = fronts if round_ % 2 == 0 else list(reversed(fronts))
            for name, port, _, pids, _ in order:
                rate, cpu = measure(name, port, pids)
                results.setdefault(name, []).append((rate, cpu))
                print(f"round {round_ + 1} {name}: {rate:.0f} messages/s, {cpu:.1f} CPU µs per message", flush=True)
        for name, runs in results.items():
            print(f"median {name}: {statistics.median(r for r, _ in runs):.0f} messages/s, "
                  f"{statistics.median(c for _, c in runs):.1f} CPU µs per message over {len(runs)} runs")
    finally:
        for _, _, proc, _, sink in fronts:
            if proc is not None:
                proc.terminate()
                proc.wait()
            if sink is not None:
                sink.wait()
        app.terminate()
        app.wait()


if __name__ == "__main__":
    main()
