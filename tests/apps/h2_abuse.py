"""Abusive HTTP/2 clients for thrust's tests, using the h2 library.

Usage: h2_abuse.py MODE PORT [N]
  rapid_reset N   open and immediately reset N streams (CVE-2023-44487)
  streams N       open N streams at once and never read their answers
  big_headers N   send one request whose header list is N bytes
  slow_window N   open N streams to a large download with a 1-byte window,
                  then never grant more
Connects with TLS (ALPN h2, certificate not checked) and prints one JSON
object: whether the server sent GOAWAY (and its code), streams refused or
reset, responses seen. Bounded: at most 15 seconds.
"""
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def connect(port, settings=None, validate=True):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="app.test")
    # validate=False: headers go out as given, even ones HTTP/2 forbids.
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                       validate_outbound_headers=validate, normalize_outbound_headers=validate)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return sock, conn


def request(conn, stream_id, path, extra=()):
    conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"), (":path", path), (":authority", "app.test")] + list(extra), end_stream=True)


def pump(sock, conn, result, seconds, stop=lambda r: False, read=False, tick=lambda: None):
    """Reads and answers frames for `seconds` or until `stop(result)`,
    counting what the server sends in `result`; with `read`, the answers'
    bytes are taken (window credit given back); `tick` runs between reads."""
    deadline = time.time() + seconds
    sock.settimeout(0.05 if read else 0.5)
    while time.time() < deadline and not stop(result):
        tick()
        try:
            data = sock.recv(65535)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            result["closed"] = True
            return
        if not data:
            result["closed"] = True
            return
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            # A GOAWAY followed by more frames in one read: the library has
            # closed the connection on the GOAWAY and refuses the rest.
            if conn.state_machine.state == h2.connection.ConnectionState.CLOSED:
                result.setdefault("goaway", "received")
            else:
                result["protocol_error"] = str(e)
            return
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                result["goaway"] = int(event.error_code)
            elif isinstance(event, h2.events.StreamReset):
                result["resets"] = result.get("resets", 0) + 1
                result.setdefault("reset_codes", []).append(int(event.error_code)) if len(result.get("reset_codes", [])) < 5 else None
            elif isinstance(event, h2.events.ResponseReceived):
                result["responses"] = result.get("responses", 0) + 1
                status = dict(event.headers).get(":status", "")
                if not status.startswith("1"):
                    result["status"] = int(status)
            elif isinstance(event, h2.events.StreamEnded):
                result["ended"] = result.get("ended", 0) + 1
            elif isinstance(event, h2.events.DataReceived) and read:
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            result["closed"] = True
            return


def main():
    mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0
    result = {"mode": mode}
    if mode == "slow_window":
        sock, conn = connect(port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    else:
        sock, conn = connect(port)
    try:
        if mode == "rapid_reset":
            for i in range(n):
                stream_id = conn.get_next_available_stream_id()
                request(conn, stream_id, "/hang?seconds=5")
                conn.reset_stream(stream_id)
                if i % 100 == 0:
                    sock.sendall(conn.data_to_send())
            sock.sendall(conn.data_to_send())
            pump(sock, conn, result, 5, lambda r: "goaway" in r or r.get("closed"))
        elif mode == "streams":
            for _ in range(n):
                stream_id = conn.get_next_available_stream_id()
                request(conn, stream_id, "/hang?seconds=8")
            sock.sendall(conn.data_to_send())
            pump(sock, conn, result, 3)
        elif mode == "big_headers":
            request(conn, 1, "/", [("x-big-%d" % i, "v" * 1000) for i in range(n // 1000)])
            sock.sendall(conn.data_to_send())
            pump(sock, conn, result, 3, lambda r: r.get("resets") or "goaway" in r or r.get("responses"))
        elif mode == "slow_window":
            pump(sock, conn, result, 0.5)
            for _ in range(n):
                stream_id = conn.get_next_available_stream_id()
                request(conn, stream_id, "/download?bytes=10000000")
            sock.sendall(conn.data_to_send())
            pump(sock, conn, result, 4)
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as e:
        # The server hung up on us mid-abuse.
        result["closed"] = True
        result["error"] = type(e).__name__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
