"""A small app server for thrust's integration tests (Python standard library only).

It listens where thrust tells it ($PORT, or $THRUST_WORKER_SOCKET), and writes one
JSON line per fully received request to $APP_LOG, so tests can assert what the
app saw. Knobs: APP_BOOT_DELAY (seconds before listening), APP_LISTEN_PORT
(listen somewhere else than $PORT), APP_WORKERS (processes), APP_IDLE_TIMEOUT, APP_TERM_DELAY (seconds to keep
serving after SIGTERM).
"""
import base64
import hashlib
import json
import os
import select
import signal
import socket
import struct
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

LOG = os.environ.get("APP_LOG")
# Re-entrant: a signal's handler records in the main thread, and may run
# while another handler there holds the lock (SIGHUP, then SIGTERM); with a
# plain lock that second handler waited forever and the app never exited.
LOG_LOCK = threading.RLock()


def record(entry):
    if not LOG:
        return
    with LOG_LOCK, open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in separate writes; without this, Nagle's
    # algorithm and delayed ACKs stall each keep-alive response by 40 ms.
    disable_nagle_algorithm = True
    # APP_IDLE_TIMEOUT: close a keep-alive connection idle this long (as
    # Puma does after its persistent timeout).
    timeout = float(os.environ["APP_IDLE_TIMEOUT"]) if os.environ.get("APP_IDLE_TIMEOUT") else None

    def log_message(self, *args):
        pass

    # --- request helpers -------------------------------------------------
    def read_body(self):
        """Reads the whole body (Content-Length or chunked); returns (bytes,
        count). Its SHA-256 is left in self.body_digest."""
        self.body_digest = hashlib.sha256()
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            total, parts = 0, []
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ConnectionError("truncated chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 16))
                    if not data:
                        raise ConnectionError("truncated chunk")
                    remaining -= len(data)
                    total += len(data)
                    self.body_digest.update(data)
                    if total <= 1 << 16:
                        parts.append(data)
                self.rfile.readline(16)
            return b"".join(parts)[: 1 << 16], total
        length = int(self.headers.get("Content-Length") or 0)
        total, parts = 0, []
        while total < length:
            data = self.rfile.read(min(length - total, 1 << 16))
            if not data:
                raise ConnectionError("truncated body")
            self.body_digest.update(data)
            if total < 1 << 16:
                parts.append(data)
            total += len(data)
        return b"".join(parts)[: 1 << 16], total

    def send(self, status, body, content_type="text/plain", extra=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # --- dispatch --------------------------------------------------------
    def handle_any(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/ignore-body":
            # An app stuck before reading the request body: it neither
            # reads nor answers for `seconds`, then hangs up.
            time.sleep(float(query.get("seconds", "10")))
            self.close_connection = True
            return
        try:
            body, body_len = self.read_body()
        except (ConnectionError, ValueError):
            self.close_connection = True
            return
        record({
            "method": self.command,
            "target": self.path,
            "path": url.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": body_len,
            "time": time.time(),
            # Which of thrust's connections carried it (its port).
            "peer": self.client_address[1],
        })
        if url.path == "/thrust/domains":
            self.route_on_demand_ask(query)
            return
        route = getattr(self, "route_" + url.path.strip("/").replace("-", "_"), None)
        if route is None:
            self.send(200, "hello from app\n")
        else:
            route(query, body, body_len)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = handle_any

    # --- routes ----------------------------------------------------------
    def route_echo(self, query, body, body_len):
        self.send(200, json.dumps({
            "method": self.command,
            "target": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": body_len,
        }), "application/json")

    def route_upload(self, query, body, body_len):
        self.send(200, str(body_len))

    def route_digest(self, query, body, body_len):
        """The request body's length and SHA-256."""
        self.send(200, "%d %s" % (body_len, self.body_digest.hexdigest()))

    def route_download(self, query, body, body_len):
        size = int(query.get("bytes", "0"))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"x" * (1 << 16)
        sent = 0
        while sent < size:
            n = min(len(block), size - sent)
            self.wfile.write(block[:n])
            sent += n

    def route_sse(self, query, body, body_len):
        """Events written one at a time with a pause between them."""
        count = int(query.get("n", "3"))
        interval = float(query.get("interval", "0.5"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(count):
            self.chunk("data: event %d at %.3f\n\n" % (i, time.time()))
            time.sleep(interval)
        self.wfile.write(b"0\r\n\r\n")

    def route_slow_head(self, query, body, body_len):
        time.sleep(float(query.get("seconds", "5")))
        self.send(200, "late\n")

    def route_hang(self, query, body, body_len):
        """Waits without answering; records when the other side hangs up."""
        deadline = time.time() + float(query.get("seconds", "30"))
        while time.time() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                record({"event": "disconnected", "path": "/hang", "time": time.time()})
                self.close_connection = True
                return
        self.send(200, "done\n")

    @staticmethod
    def extra_headers(query):
        """Response headers asked for in the query: h_Cache_Control=public → Cache-Control: public."""
        return [(k[len("h_"):].replace("_", "-"), v) for k, v in query.items() if k.startswith("h_")]

    def route_text(self, query, body, body_len):
        """`bytes` bytes of repetitive text, of `type`, with the asked-for headers."""
        size = int(query.get("bytes", "5000"))
        text = "".join("line %05d of some text that compresses well\n" % i for i in range(size // 40 + 1))[:size]
        content_type = query.get("type", "text/plain")
        if query.get("chunked"):
            self.send_response(int(query.get("status", "200")))
            self.send_header("Content-Type", content_type)
            for k, v in self.extra_headers(query):
                self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(text), 1000):
                self.chunk(text[start:start + 1000])
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send(int(query.get("status", "200")), text, None if content_type == "none" else content_type, self.extra_headers(query))

    def route_asset(self, query, body, body_len):
        """A file's bytes served by the app itself, as a cacheable asset."""
        with open(query["path"], "rb") as f:
            data = f.read()
        self.send(200, data, "text/javascript", [("Cache-Control", "public, max-age=3600")])

    def route_on_demand_ask(self, query):
        """thrust's on-demand TLS question: 200 for a name in ALLOWED_DOMAINS
        (an entry starting with a dot allows the names below it), else 404."""
        name = query.get("domain", "")
        allowed = [d for d in os.environ.get("ALLOWED_DOMAINS", "").split(",") if d]
        yes = any(name == d or (d.startswith(".") and name.endswith(d)) for d in allowed)
        self.send(200 if yes else 404, "yes\n" if yes else "no\n")

    def route_sendfile(self, query, body, body_len):
        """Like Rack::Sendfile: names the file in the header the front server announced."""
        kind = self.headers.get("X-Sendfile-Type")
        path = query.get("path", "")
        extra = self.extra_headers(query)
        if kind == "X-Accel-Redirect":
            mapping = self.headers.get("X-Accel-Mapping", "")
            if "=" in mapping:
                root, uri = mapping.split("=", 1)
                if path.startswith(root):
                    path = uri + path[len(root):]
        if kind:
            extra.append((kind, path))
        content_type = query.get("type", "text/plain")
        self.send(int(query.get("status", "200")), "body from the app\n", None if content_type == "none" else content_type, extra)

    def route_reset_mid_body(self, query, body, body_len):
        """Announces `bytes` of body, sends a tenth of them, then resets the
        connection (as a crashing worker's kernel would)."""
        size = int(query.get("bytes", "1000000"))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(b"r" * (size // 10))
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def route_close(self, query, body, body_len):
        """Hangs up without answering."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def route_redirect_to_https(self, query, body, body_len):
        self.send(301, "", extra=[("Location", "https://localhost/")])

    def route_headers(self, query, body, body_len):
        self.send(200, "ok\n", extra=[
            ("Connection", "X-Internal"), ("X-Internal", "secret"),
            ("Keep-Alive", "timeout=5"), ("X-Kept", "yes")])

    def route_ws(self, query, body, body_len):
        """WebSocket echo: every text frame comes back as sent."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                break
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self.rfile.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.rfile.read(8), "big")
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                break
            frame = bytes([0x80 | opcode])
            frame += bytes([len(payload)]) if len(payload) < 126 else bytes([126]) + len(payload).to_bytes(2, "big")
            self.wfile.write(frame + payload)
            self.wfile.flush()
        self.close_connection = True


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class UnixHandler(Handler):
    disable_nagle_algorithm = False  # TCP_NODELAY does not apply to Unix sockets
    def address_string(self):
        return "unix"

    def setup(self):
        self.client_address = ("unix", 0)
        super().setup()


def main():
    def on_term(signum, frame):
        record({"event": "signal", "signal": signum, "time": time.time()})
        # Like Puma finishing its requests: keep serving a while, then exit 0.
        delay = float(os.environ.get("APP_TERM_DELAY", "0"))
        if delay:
            threading.Timer(delay, lambda: os._exit(0)).start()
        else:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGQUIT, on_term)
    signal.signal(signal.SIGUSR1, lambda s, f: record({"event": "signal", "signal": s}))
    signal.signal(signal.SIGUSR2, lambda s, f: record({"event": "signal", "signal": s}))
    signal.signal(signal.SIGWINCH, lambda s, f: record({"event": "signal", "signal": s}))
    time.sleep(float(os.environ.get("APP_BOOT_DELAY", "0")))
    socket_path = os.environ.get("THRUST_WORKER_SOCKET")
    if socket_path:
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        server = UnixServer(socket_path, UnixHandler)
    else:
        port = int(os.environ.get("APP_LISTEN_PORT") or os.environ["PORT"])
        server = TCPServer(("127.0.0.1", port), Handler)
    # APP_WORKERS > 1: more processes accept on the same socket (like Puma's
    # cluster mode), for tests that need throughput from this small app.
    for _ in range(int(os.environ.get("APP_WORKERS", "1")) - 1):
        if os.fork() == 0:
            break
    record({"event": "listening", "pid": os.getpid(), "time": time.time()})
    server.serve_forever()


if __name__ == "__main__":
    main()
