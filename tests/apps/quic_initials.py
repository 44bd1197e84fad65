"""Starts QUIC handshakes it never finishes, as spoofed Initial packets
would: each from a UDP socket of its own (a new address), one Initial
each, never answered. Counts what the server sends back first on each.

Usage: quic_initials.py PORT COUNT
Prints one JSON object: "retry" (Retry packets), "handshake" (the server
spent a handshake: Initial or Handshake packets), "silent".
"""
import json
import socket
import ssl
import sys
import time

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    sockets = []
    for _ in range(count):
        config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="app.test",
                                   verify_mode=ssl.CERT_NONE)
        conn = QuicConnection(configuration=config)
        conn.connect(("127.0.0.1", port), now=time.time())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for data, addr in conn.datagrams_to_send(now=time.time()):
            sock.sendto(data, addr)
        sockets.append(sock)
    counts = {"retry": 0, "handshake": 0, "silent": 0}
    deadline = time.time() + 3
    for sock in sockets:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            first = sock.recv(65535)[0]
        except (socket.timeout, OSError):
            counts["silent"] += 1
            continue
        # Long header packets: bits 4-5 are the type (3: Retry in QUIC v1).
        if first & 0x80 and (first >> 4) & 0x03 == 3:
            counts["retry"] += 1
        else:
            counts["handshake"] += 1
        sock.close()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
