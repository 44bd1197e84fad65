"""Helpers shared by the load benchmarks: ports, CPU accounting, tools, nginx."""
import argparse
import os
import shutil
import socket
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "tests/apps/app.py")
THRUST = os.path.join(ROOT, "target/release/thrust")
TICKS = os.sysconf("SC_CLK_TCK")


def ensure_tools(tools):
    """Installs the Debian packages for the (command, package) pairs missing here."""
    missing = [pkg for tool, pkg in tools if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool)]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids):
    """User + system CPU seconds used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / TICKS


def process_tree(pid):
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        pids += kids
        frontier += kids
    return pids


def nginx_conf(work, servers):
    """A complete nginx.conf: 2 workers, no logs, temp files under `work`, and the given server blocks."""
    return f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    include /etc/nginx/mime.types;
    keepalive_requests 1000000;
{servers}
}}
"""


def prepare(tools, prefix):
    """Parses --seconds, installs missing tools, builds thrust (release) and
    makes a work directory nginx's unprivileged workers can read."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    ensure_tools(tools)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix=prefix)
    os.chmod(work, 0o755)
    return args, work
