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
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import TestAppFronts, cpu_seconds, nginx_proxy_conf  # noqa: E402

CONNECTIONS = int(os.environ.get("CONNECTIONS", "100"))
SECONDS = float(os.environ.get("SECONDS", "5"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
MESSAGE = b"hello, echo"

NGINX_CONF = nginx_proxy_conf(location=[
    "proxy_set_header Upgrade $http_upgrade;", 'proxy_set_header Connection "upgrade";',
    "proxy_read_timeout 60s;"])


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
    with TestAppFronts("thrust-ws-", binaries, NGINX_CONF, direct=True) as setup:
        results = {}
        for round_ in range(ROUNDS):
            order = setup.fronts if round_ % 2 == 0 else list(reversed(setup.fronts))
            for name, port, pids in order:
                rate, cpu = measure(name, port, pids)
                results.setdefault(name, []).append((rate, cpu))
                print(f"round {round_ + 1} {name}: {rate:.0f} messages/s, {cpu:.1f} CPU µs per message", flush=True)
        for name, runs in results.items():
            print(f"median {name}: {statistics.median(r for r, _ in runs):.0f} messages/s, "
                  f"{statistics.median(c for _, c in runs):.1f} CPU µs per message over {len(runs)} runs")


if __name__ == "__main__":
    main()
