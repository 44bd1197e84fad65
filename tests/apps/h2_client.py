"""An HTTP/2 client (TLS, ALPN h2, certificate not checked) for the tests of
one request stream, on the h2 library.

Usage: h2_client.py MODE PORT PATH [--header "Name: value"]... [--seconds S] [--when FILE]
  get     send the request (a header may be one HTTP/2 forbids a client
          to send wrongly: nothing is checked) and wait for its answer
  cancel  send the request, reset the stream (CANCEL) once FILE exists,
          and keep the connection open for S seconds in all
  stall   announce a 1-byte window, send the request and never grant more,
          for S seconds
Prints one JSON object: "status" (or null), "resets" (the codes of the
server's RST_STREAMs), "goaway", "closed". Bounded by S + 10 seconds.
"""
import argparse
import json
import os
import socket
import ssl
import time

import h2.config
import h2.errors
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["get", "cancel", "stall"])
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--when")
    args = parser.parse_args()

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=5)
    sock = context.wrap_socket(raw, server_hostname="app.test")
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                       validate_outbound_headers=False,
                                       normalize_outbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    if args.mode == "stall":
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    head = [(":method", "GET"), (":scheme", "https"), (":path", args.path), (":authority", "app.test")]
    head += [tuple(h.split(": ", 1)) for h in args.header]
    conn.send_headers(1, [(k.lower(), v) for k, v in head], end_stream=True)
    sock.sendall(conn.data_to_send())

    result = {"status": None, "resets": [], "goaway": None, "closed": False}
    started = time.time()
    deadline = started + args.seconds
    cancelled = False
    sock.settimeout(0.05)
    while time.time() < deadline:
        if args.mode == "cancel" and not cancelled and os.path.exists(args.when):
            conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
            sock.sendall(conn.data_to_send())
            cancelled = True
        try:
            data = sock.recv(65535)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            result["closed"] = True
            break
        if not data:
            result["closed"] = True
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            result["protocol_error"] = str(e)
            break
        done = False
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers).get(":status")
                if status and not status.startswith("1"):
                    result["status"] = int(status)
            elif isinstance(event, h2.events.StreamReset):
                result["resets"].append(int(event.error_code))
                done = args.mode == "get"
            elif isinstance(event, h2.events.StreamEnded):
                done = args.mode == "get"
            elif isinstance(event, h2.events.ConnectionTerminated):
                result["goaway"] = int(event.error_code)
                done = True
            elif isinstance(event, h2.events.DataReceived) and args.mode != "stall":
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
        if done:
            break
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
