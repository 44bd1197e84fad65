"""Keep-alive HTTP/1.1 clients over TLS, for thrust's parking tests.

Usage: tls_keepalive.py PORT COUNT [PAUSE closed]
Opens COUNT TLS connections (ALPN http/1.1, certificate not checked), sends
GET / on each and reads the answer, prints "ready", then waits for a line on
stdin and sends GET / again on every connection. Prints the statuses of the
second round as one JSON list. Bounded: each read times out after 10 s.

With PAUSE and "closed": opens them PAUSE seconds apart, then prints which
of them thrust has closed since (one JSON list of booleans) and exits.
"""
import json
import socket
import ssl
import sys
import time


def get(conn):
    conn.sendall(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(4096)
    return int(head.split()[1])


def closed(conn):
    """True once the connection reads as closed within 0.3 s."""
    conn.settimeout(0.3)
    try:
        while conn.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    conns = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn = context.wrap_socket(sock, server_hostname="app.test")
        assert get(conn) == 200
        conns.append(conn)
        time.sleep(pause)
    if sys.argv[4:] == ["closed"]:
        print(json.dumps([closed(conn) for conn in conns]), flush=True)
        return
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps([get(conn) for conn in conns]), flush=True)


main()
