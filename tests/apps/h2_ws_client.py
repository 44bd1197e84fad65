"""WebSocket over HTTP/2 (RFC 8441) client for thrust's tests, using the h2 library.

Usage: h2_ws_client.py HOST PORT PATH MESSAGE...
Connects with TLS (ALPN h2, certificate not checked), opens an extended
CONNECT stream for the WebSocket protocol, sends each MESSAGE as a masked
text frame and reads the echo. Prints one JSON object with what happened.
"""
import json
import os
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(payload):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def main():
    host, port, path, messages = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    result = {"connect_protocol": False, "status": None, "echoes": []}
    stream_id = None
    pending = list(messages)
    received = b""
    while True:
        data = sock.recv(65535)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                setting = event.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if setting is not None:
                    result["connect_protocol"] = setting.new_value == 1
                if stream_id is None and result["connect_protocol"]:
                    stream_id = conn.get_next_available_stream_id()
                    conn.send_headers(stream_id, [
                        (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                        (":path", path), (":authority", host), ("sec-websocket-version", "13"),
                    ])
            elif isinstance(event, h2.events.ResponseReceived):
                result["status"] = int(dict(event.headers)[b":status"])
                if result["status"] == 200 and pending:
                    conn.send_data(stream_id, frame(pending.pop(0).encode()))
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                received += event.data
                while len(received) >= 2 and len(received) >= 2 + received[1]:
                    length = received[1]
                    result["echoes"].append(received[2:2 + length].decode())
                    received = received[2 + length:]
                    if pending:
                        conn.send_data(stream_id, frame(pending.pop(0).encode()))
            elif isinstance(event, h2.events.StreamReset):
                result["reset"] = event.error_code
        sock.sendall(conn.data_to_send())
        refused = stream_id is None and conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 0
        finished = len(result["echoes"]) == len(messages)
        failed = result.get("reset") is not None or result["status"] not in (None, 200)
        if refused or finished or failed:
            break
    print(json.dumps(result))


if __name__ == "__main__":
    main()
