"""nginx's row for benches/instructions.py's proxied shape: user-space
instructions per proxied GET of nginx 1.22 as the front, under callgrind
in the same harness (the Python test app behind it, 300 requests
uncounted, then 2,000 counted with h2load over four keep-alive
connections). nginx as the equivalent front: one worker process without
a master (`master_process off`), keep-alive to the app, an unbuffered
JSON access log with the fields thrust's request log has, X-Forwarded-*
headers set for the app.

Usage: python3 benches/instructions_nginx.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ensure_tools, free_port  # noqa: E402
from instructions import COUNT, WARMUP, costs, load  # noqa: E402

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
    log_format json escape=json '{{"time":"$time_iso8601","level":"INFO","msg":"Request",'
        '"path":"$uri","status":$status,"dur":$request_time,"method":"$request_method",'
        '"req_content_length":"$content_length","req_content_type":"$content_type",'
        '"resp_content_length":$bytes_sent,"resp_content_type":"$sent_http_content_type",'
        '"remote_addr":"$remote_addr","user_agent":"$http_user_agent","cache":"bypass",'
        '"query":"$query_string","proto":"$server_protocol","request_id":"$request_id",'
        '"resp_content_encoding":"$sent_http_content_encoding"}}';
    access_log {work}/access.log json;
    upstream app {{ server 127.0.0.1:{app}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
}}
"""


def main():
    ensure_tools([(NGINX, "nginx"), ("valgrind", "valgrind"), ("h2load", "nghttp2-client")])
    work = tempfile.mkdtemp(prefix="thrust-instructions-nginx-")
    os.makedirs(os.path.join(work, "tmp"))
    port, app_port = free_port(), free_port()
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(CONFIG.format(work=work, port=port, app=app_port))
    app = subprocess.Popen(["python3", os.path.join(ROOT, "tests/apps/app.py")],
                           env=dict(os.environ, PORT=str(app_port), APP_LOG=os.path.join(work, "app.log")),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = os.path.join(work, "out")
    vg = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                           NGINX, "-c", os.path.join(work, "nginx.conf"), "-e", os.path.join(work, "error.log")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while subprocess.run(["curl", "-fs", "-o", "/dev/null", f"http://127.0.0.1:{port}/"]).returncode != 0:
            if time.time() > deadline:
                sys.exit("nginx under valgrind did not answer")
            time.sleep(0.2)
        load("proxied", port, "/", WARMUP)
        subprocess.run(["callgrind_control", "-i", "on", str(vg.pid)], capture_output=True)
        load("proxied", port, "/", COUNT)
        subprocess.run(["callgrind_control", "-i", "off", str(vg.pid)], capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(vg.pid)], capture_output=True)
        total = own = 0
        for _ in range(100):
            dumped = [os.path.join(work, f) for f in os.listdir(work) if f.startswith("out.")]
            if dumped and all("totals:" in open(f, errors="replace").read() for f in dumped):
                for f in dumped:
                    o, t, _ = costs(f, NGINX)
                    own, total = own + o, total + t
                break
            time.sleep(0.2)
        print(f"| nginx, proxied ({COUNT} requests counted) | {round(own / COUNT):,} (nginx's binary) "
              f"| {round(total / COUNT):,} (with shared libraries) |")
    finally:
        vg.terminate()
        vg.wait()
        app.terminate()
        app.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
