"""An HTTP/2 client that reads 103 Early Hints, using the h2 library.

Usage: h2_hints_client.py PORT PATH RELEASE_FILE [tls]
Sends GET PATH (h2c with prior knowledge, or TLS with ALPN h2 when "tls" is
given, certificate not checked). Once two 103s have arrived and the answer
has not, it creates RELEASE_FILE, which lets the test app answer. Prints one
JSON object: the statuses in the order they came, each hint's link headers,
whether the hints came while the answer was still held back, and the body.
Bounded: at most 15 seconds.
"""
import json
import pathlib
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events


def main():
    port, path, release = int(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    tls = len(sys.argv) > 4 and sys.argv[4] == "tls"
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        sock = context.wrap_socket(sock, server_hostname="app.test")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    scheme = "https" if tls else "http"
    conn.send_headers(1, [(":method", "GET"), (":scheme", scheme), (":path", path), (":authority", "app.test")], end_stream=True)
    sock.sendall(conn.data_to_send())

    result = {"statuses": [], "hints": [], "released_after_hints": False, "body": ""}
    body = b""
    deadline = time.time() + 15
    sock.settimeout(0.5)
    done = False
    while not done and time.time() < deadline:
        try:
            data = sock.recv(65535)
        except socket.timeout:
            continue
        if not data:
            result["closed"] = True
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.InformationalResponseReceived):
                headers = dict()
                for name, value in event.headers:
                    headers.setdefault(name, []).append(value)
                result["statuses"].append(headers[":status"][0])
                result["hints"].append(headers.get("link", []))
            elif isinstance(event, h2.events.ResponseReceived):
                result["statuses"].append(dict(event.headers)[":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                done = True
        if result["statuses"] == ["103", "103"] and not release.exists():
            release.touch()
            result["released_after_hints"] = True
        sock.sendall(conn.data_to_send())
    result["body"] = body.decode(errors="replace")
    print(json.dumps(result))


main()
