"""Memory held by idle keep-alive connections over TLS, HTTP/1.1 or HTTP/2,
or over QUIC (HTTP/3), for one or more thrust binaries in front of the
suite's nginx app.

Each binary is measured fresh, twice: RSS once it runs, then with COUNT TLS
connections (ALPN http/1.1, or h2 with ALPN=h2; a self-signed ECDSA P-256
certificate) that each made one request and then sat idle for IDLE seconds
(an HTTP/2 one with no stream open).

Usage: python3 benches/idle_tls_memory.py BINARY [BINARY ...]
       (COUNT=1000, IDLE=2.5, ALPN=http/1.1, h2 or h3; h2 needs python3-h2,
       h3 aioquic: run it with target/tools/aioquic/bin/python)
"""
import os
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, rss_kib  # noqa: E402
import suite  # noqa: E402

COUNT = int(os.environ.get("COUNT", "1000"))
IDLE = float(os.environ.get("IDLE", "2.5"))
ALPN = os.environ.get("ALPN", "http/1.1")


def connect(port, context):
    conn = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="app.test")
    if ALPN == "h2":
        return h2_request(conn)
    conn.sendall(b"GET /dynamic HTTP/1.1\r\nHost: app.test\r\n\r\n")
    if not conn.recv(65536).startswith(b"HTTP/1.1 200"):
        raise RuntimeError("no 200 over TLS")
    return conn


def h2_request(conn):
    """One GET over HTTP/2, read to its end; the connection is kept."""
    import h2.config
    import h2.connection
    import h2.events
    h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h2conn.initiate_connection()
    h2conn.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "app.test"),
                            (":path", "/dynamic")], end_stream=True)
    conn.sendall(h2conn.data_to_send())
    while True:
        data = conn.recv(65536)
        if not data:
            raise RuntimeError("closed before the HTTP/2 answer")
        for event in h2conn.receive_data(data):
            if isinstance(event, h2.events.StreamEnded):
                conn.sendall(h2conn.data_to_send())
                return conn
        conn.sendall(h2conn.data_to_send())


def hold_h3(port, count, measure_held):
    """`count` QUIC connections that each made one HTTP/3 request, held
    while `measure_held` runs."""
    import asyncio
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/apps"))
    from aioquic.asyncio.client import connect
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration
    from h3_client import Client

    async def run():
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="app.test",
                                   verify_mode=ssl.CERT_NONE)
        opened = []
        try:
            for _ in range(count):
                context = connect("127.0.0.1", port, configuration=config, create_protocol=Client)
                client = await context.__aenter__()
                opened.append(context)
                url = f"https://app.test:{port}/dynamic"
                exchange = await asyncio.wait_for(client.request("GET", url, [], None, None), 10)
                if exchange.status != 200:
                    raise RuntimeError(f"HTTP/3 answer {exchange.status}")
            await asyncio.sleep(IDLE)
            measure_held()
        finally:
            for context in opened:
                await context.__aexit__(None, None, None)

    asyncio.run(run())


def measure(bench, binary, cert, key):
    https = free_port()
    env = bench.thrust_env(HTTP_PORT=free_port(), HTTPS_PORT=https, SSL_CERT_PATH=cert, SSL_KEY_PATH=key,
                           THRUST_HTTP3="1" if ALPN == "h3" else "0")
    front = subprocess.Popen([binary, "sleep", "infinity"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # Over QUIC, thrust is known ready once it answers over TCP.
    context.set_alpn_protocols(["http/1.1" if ALPN == "h3" else ALPN])
    try:
        deadline = time.time() + 10
        while True:
            try:
                connect(https, context).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        time.sleep(0.3)
        before = rss_kib([front.pid])

        def report():
            held = rss_kib([front.pid])
            print(f"{binary}: RSS {before / 1024:.1f} MiB, {held / 1024:.1f} MiB with {COUNT} idle TLS connections "
                  f"({(held - before) / COUNT:.1f} KiB each, {ALPN})", flush=True)
        if ALPN == "h3":
            hold_h3(https, COUNT, report)
            return
        conns = [connect(https, context) for _ in range(COUNT)]
        time.sleep(IDLE)
        report()
        for conn in conns:
            conn.close()
    finally:
        front.terminate()
        front.wait()


def main():
    binaries, bench = suite.comparison("thrust-idle-tls-", __doc__)
    cert, key = os.path.join(bench.work, "idle.crt"), os.path.join(bench.work, "idle.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=app.test"],
                   check=True, capture_output=True)
    try:
        for _ in range(2):
            for binary in binaries:
                measure(bench, binary, cert, key)
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
