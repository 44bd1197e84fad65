"""Keep-alive clients that wait between requests long enough for thrust to
park their connections (PARK_AFTER is 100 ms), so each request wakes one:
CLIENTS connections send one request each per round, one after another
(one request at the app at a time, as when visitors' requests are spread
out: no burst of app connections), rounds PAUSE seconds apart, until TOTAL
requests are answered. Prints "TOTAL succeeded" as h2load does
(benches/instructions.sh's parked mode).

Usage: python3 benches/load/parked_clients.py PORT CLIENTS TOTAL PAUSE
"""
import socket
import sys
import time


def answer(conn):
    """Reads one answer whole (Content-Length bodies only: the test app's)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before an answer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside an answer")
        body += chunk
    return head.split(b" ")[1]


def main():
    port, clients, total, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(min(clients, total))]
    succeeded = 0
    while succeeded < total:
        for conn in conns[:total - succeeded]:
            conn.sendall(request)
            status = answer(conn)
            if status != b"200":
                sys.exit(f"answered {status.decode()}, not 200")
            succeeded += 1
        if succeeded < total:
            time.sleep(pause)
    for conn in conns:
        conn.close()
    print(f"{succeeded} succeeded")


if __name__ == "__main__":
    main()
