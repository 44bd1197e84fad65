"""An HTTP/2 client (TLS, ALPN h2, certificate not checked) for the tests of
one request stream, on the h2 library (through h2_abuse's connection and
frame loop).

Usage: h2_client.py MODE PORT PATH [--header "Name: value"]... [--seconds S] [--when FILE]
  get     send the request (a header may be one HTTP/2 forbids a client
          to send wrongly: nothing is checked) and wait for its answer
  cancel  send the request, reset the stream (CANCEL) once FILE exists,
          and keep the connection open for S seconds in all
  stall   announce a 1-byte window, send the request and never grant more,
          for S seconds
  idle    send the request, create FILE once it is answered, then keep the
          connection open without streams until the server ends it or S
          seconds pass
Prints one JSON object: "status" (or null), "resets" (the codes of the
server's RST_STREAMs), "goaway", "closed". Bounded by S seconds.
"""
import argparse
import json
import os

import h2.errors
import h2.settings

from h2_abuse import connect, pump


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["get", "cancel", "stall", "idle"])
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--when")
    args = parser.parse_args()

    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1} if args.mode == "stall" else None
    sock, conn = connect(args.port, settings, validate=False)
    head = [(":method", "GET"), (":scheme", "https"), (":path", args.path), (":authority", "app.test")]
    head += [tuple(h.split(": ", 1)) for h in args.header]
    conn.send_headers(1, [(k.lower(), v) for k, v in head], end_stream=True)
    sock.sendall(conn.data_to_send())

    result = {"status": None}

    def cancel_when_told():
        if args.mode == "cancel" and "cancelled" not in result and os.path.exists(args.when):
            conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
            sock.sendall(conn.data_to_send())
            result["cancelled"] = True

    def answered(r):
        if args.mode == "idle" and r.get("ended") and not os.path.exists(args.when):
            open(args.when, "w").close()
        if args.mode == "idle":
            return "goaway" in r
        return args.mode == "get" and (r.get("ended") or r.get("resets") or "goaway" in r)

    pump(sock, conn, result, args.seconds, stop=answered, read=args.mode != "stall", tick=cancel_when_told)
    result["resets"] = result.get("reset_codes", [])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
