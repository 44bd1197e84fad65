"""An HTTP/3 client for thrust's tests, on aioquic.

Sends requests over one QUIC connection and prints, per request, one JSON
line: {"status", "headers" (lower-case names, lists of values),
"informational" (the 1xx responses before it, each {"status", "headers"}),
"body" (latin-1 text, or its length and sha256 with --digest), "chunks"
(seconds from the request to each DATA frame, with --times)}.

Usage: h3_client.py [--insecure | --ca FILE] [--connect ADDRESS] [--method M] [--header "Name: value"]...
                    [--data-file F] [--digest] [--times] [--repeat N] [--cut-after BYTES]
                    [--close-when FILE] URL

--close-when: once FILE exists, close the whole QUIC connection without
waiting for the answer.
"""
import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys
import time
from urllib.parse import urlsplit

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset


class Exchange:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.informational = []
        self.body = bytearray()
        self.chunks = []
        self.started = time.monotonic()
        self.done = asyncio.get_running_loop().create_future()
        self.reset = None


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.exchanges = {}
        self.terminated = None

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            for exchange in self.exchanges.values():
                if not exchange.done.done():
                    exchange.done.set_result(None)
            return
        if isinstance(event, StreamReset) and event.stream_id in self.exchanges:
            exchange = self.exchanges[event.stream_id]
            exchange.reset = event.error_code
            if not exchange.done.done():
                exchange.done.set_result(None)
        for h3_event in self.h3.handle_event(event):
            exchange = self.exchanges.get(getattr(h3_event, "stream_id", None))
            if exchange is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                status, headers = None, {}
                for name, value in h3_event.headers:
                    name, value = name.decode(), value.decode("latin-1")
                    if name == ":status":
                        status = int(value)
                    elif not name.startswith(":"):
                        headers.setdefault(name, []).append(value)
                if status is not None and status < 200:
                    exchange.informational.append({"status": status, "headers": headers})
                elif exchange.status is None:
                    exchange.status, exchange.headers = status, headers
            elif isinstance(h3_event, DataReceived):
                exchange.body += h3_event.data
                if h3_event.data:
                    exchange.chunks.append(round(time.monotonic() - exchange.started, 3))
            if getattr(h3_event, "stream_ended", False) and not exchange.done.done():
                exchange.done.set_result(None)

    async def request(self, method, url, headers, body, cut_after, close_when=None):
        parts = urlsplit(url)
        stream_id = self._quic.get_next_available_stream_id()
        exchange = self.exchanges[stream_id] = Exchange()
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        head = [(b":method", method.encode()), (b":scheme", b"https"),
                (b":authority", parts.netloc.encode()), (b":path", path.encode())]
        head += [(k.lower().encode(), v.encode()) for k, v in headers]
        self.h3.send_headers(stream_id, head, end_stream=body is None)
        if body is not None:
            for start in range(0, len(body), 65536):
                chunk = body[start:start + 65536]
                self.h3.send_data(stream_id, chunk, end_stream=start + 65536 >= len(body))
                self.transmit()
                await asyncio.sleep(0)
            if not body:
                self.h3.send_data(stream_id, b"", end_stream=True)
        self.transmit()
        if close_when is not None:
            while not os.path.exists(close_when):
                await asyncio.sleep(0.02)
            self.close()
            return exchange
        if cut_after is not None:
            while len(exchange.body) < cut_after and not exchange.done.done():
                await asyncio.sleep(0.01)
            # The client goes away mid-answer: the stream is reset.
            self._quic.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            self.transmit()
            return exchange
        await exchange.done
        return exchange


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--data-file")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--ca")
    parser.add_argument("--connect", help="address to connect to instead of the URL's host (which stays the name sent and verified)")
    parser.add_argument("--digest", action="store_true")
    parser.add_argument("--times", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cut-after", type=int)
    parser.add_argument("--close-when")
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()

    parts = urlsplit(args.url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=parts.hostname)
    if args.insecure:
        config.verify_mode = ssl.CERT_NONE
    elif args.ca:
        config.load_verify_locations(args.ca)
    headers = [tuple(h.split(": ", 1)) for h in args.header]
    body = open(args.data_file, "rb").read() if args.data_file else None
    async with connect(args.connect or parts.hostname, parts.port or 443, configuration=config,
                       create_protocol=Client, wait_connected=True) as client:
        for _ in range(args.repeat):
            exchange = await asyncio.wait_for(
                client.request(args.method, args.url, headers, body, args.cut_after, args.close_when),
                args.timeout)
            out = {"status": exchange.status, "headers": exchange.headers,
                   "informational": exchange.informational, "reset": exchange.reset}
            if args.digest:
                out["length"] = len(exchange.body)
                out["sha256"] = hashlib.sha256(exchange.body).hexdigest()
            else:
                out["body"] = exchange.body.decode("latin-1")
            if args.times:
                out["chunks"] = exchange.chunks
            print(json.dumps(out), flush=True)
        if client.terminated is not None:
            print(json.dumps({"terminated": client.terminated.error_code,
                              "reason": client.terminated.reason_phrase}), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (ConnectionError, asyncio.TimeoutError) as e:
        print(json.dumps({"error": repr(e)}), flush=True)
        sys.exit(1)
