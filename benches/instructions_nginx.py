"""nginx's rows for benches/instructions.py's shapes: user-space
instructions per request of nginx 1.22 as the front, under callgrind in
the same harness (the Python test app behind it, 300 requests uncounted,
then 2,000 counted with h2load over four keep-alive connections). nginx as
the equivalent front: one worker process without a master
(`master_process off`), keep-alive to the app, an unbuffered JSON access
log with the fields thrust's request log has, X-Forwarded-* headers set
for the app; per shape:

  proxied   as above
  hit       proxy_cache (nginx's cache is files: a hit opens and reads one)
  h2c       `listen ... http2` (HTTP/2 without TLS, prior knowledge)
  sendfile  the app answers with X-Accel-Redirect (announced to it as
            thrust announces X-Sendfile), nginx sends the file with
            sendfile on

Usage: python3 benches/instructions_nginx.py [SHAPE ...]   (all four by default)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ensure_tools, free_port  # noqa: E402
from instructions import COUNT, SHAPES, costs, counted, target  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX = "/usr/sbin/nginx"

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    keepalive_requests 1000000;
    sendfile on;
    proxy_cache_path {work}/cache keys_zone=answers:10m;
    log_format json escape=json '{{"time":"$time_iso8601","level":"INFO","msg":"Request",'
        '"path":"$uri","status":$status,"dur":$request_time,"method":"$request_method",'
        '"req_content_length":"$content_length","req_content_type":"$content_type",'
        '"resp_content_length":$bytes_sent,"resp_content_type":"$sent_http_content_type",'
        '"remote_addr":"$remote_addr","user_agent":"$http_user_agent","cache":"$upstream_cache_status",'
        '"query":"$query_string","proto":"$server_protocol","request_id":"$request_id",'
        '"resp_content_encoding":"$sent_http_content_encoding"}}';
    access_log {work}/access.log json;
    upstream app {{ server 127.0.0.1:{app}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port}{listen};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
            {shape}
        }}
        location /_files/ {{
            internal;
            alias {work}/;
        }}
    }}
}}
"""

# What each shape adds to the proxying location (and to `listen`).
SHAPE_CONFIG = {
    "proxied": ("", ""),
    "hit": ("", "proxy_cache answers; add_header X-Cache $upstream_cache_status;"),
    "h2c": (" http2", ""),
    "sendfile": ("", "proxy_set_header X-Sendfile-Type X-Accel-Redirect; "
                     "proxy_set_header X-Accel-Mapping {work}/=/_files/;"),
}


def measure(shape):
    work = tempfile.mkdtemp(prefix=f"thrust-instructions-nginx-{shape}-")
    os.makedirs(os.path.join(work, "tmp"))
    port, app_port = free_port(), free_port()
    listen, extra = SHAPE_CONFIG[shape]
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(CONFIG.format(work=work, port=port, app=app_port, listen=listen, shape=extra.format(work=work)))
    app = subprocess.Popen(["python3", os.path.join(ROOT, "tests/apps/app.py")],
                           env=dict(os.environ, PORT=str(app_port), APP_LOG=os.path.join(work, "app.log")),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = os.path.join(work, "out")
    vg = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                           NGINX, "-c", os.path.join(work, "nginx.conf"), "-e", os.path.join(work, "error.log")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        path = target(shape, work)
        deadline = time.time() + 60
        while subprocess.run(["h2load", "-n1", "-c1"] + ([] if shape == "h2c" else ["--h1"])
                             + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True
                             ).stdout.find("1 succeeded") < 0:
            if time.time() > deadline:
                sys.exit(f"{shape}: nginx under valgrind did not answer")
            time.sleep(0.2)
        total = own = 0
        for f in counted(vg, shape, port, path, work):
            o, t, _ = costs(f, NGINX)
            own, total = own + o, total + t
        with open(os.path.join(work, "access.log")) as log:
            last = log.readlines()[-1]
        return round(own / COUNT), round(total / COUNT), last
    finally:
        vg.terminate()
        vg.wait()
        app.terminate()
        app.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ensure_tools([(NGINX, "nginx"), ("valgrind", "valgrind"), ("h2load", "nghttp2-client")])
    shapes = sys.argv[1:] or SHAPES
    print(f"| nginx, shape ({COUNT} requests counted) | nginx's binary | with shared libraries | last access log line |")
    print("|---|---|---|---|")
    for shape in shapes:
        own, total, last = measure(shape)
        print(f"| {shape} | {own:,} | {total:,} | `{last.strip()}` |")


if __name__ == "__main__":
    main()
