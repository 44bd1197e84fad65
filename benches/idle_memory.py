"""Memory held by idle keep-alive connections, for one or more thrust binaries
side by side and nginx as the front, in front of the suite's nginx app.

Each front is measured fresh: RSS once it has answered one request, with
COUNT connections that each made one request and then sat idle for IDLE
seconds, and again
SETTLE seconds after they all closed. The app connections the front keeps
open to the app are counted too (they hold memory of their own).

Usage: python3 benches/idle_memory.py BINARY [BINARY ...]
       (COUNT=1000, IDLE=2, SETTLE=2, ROUNDS=1 by default; THRUST_ENV="NAME=VALUE ..."
       adds variables to the thrusts' environment, e.g. THRUST_ENV=H2C_ENABLED=1)
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, fresh_front, process_tree, rss_kib  # noqa: E402
import suite  # noqa: E402

COUNT = int(os.environ.get("COUNT", "1000"))
SETTLE = float(os.environ.get("SETTLE", "2"))
IDLE = float(os.environ.get("IDLE", "2"))


def app_connections(app_port):
    """Established connections to the app's port."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{app_port} )"],
                         capture_output=True, text=True).stdout
    return len(out.splitlines())


def measure(bench, name, cmd, env, port, pids_of):
    with fresh_front(cmd, env, port, pids_of) as (url, pids, before):
        conns = suite.open_idle_connections(url, COUNT)
        time.sleep(IDLE)
        held = rss_kib(pids)
        upstream = app_connections(bench.ports["APP_PORT"])
        open_now = suite.still_open(conns)
        for s in conns:
            s.close()
        time.sleep(SETTLE)
        after = rss_kib(pids)
        per_conn = (held - before) / COUNT
        print(f"{name}: RSS {before / 1024:.1f} MiB idle, {held / 1024:.1f} MiB with {open_now} idle connections "
              f"({per_conn:.1f} KiB each; {upstream} app connections open), "
              f"{after / 1024:.1f} MiB {SETTLE:g} s after they closed", flush=True)


def main():
    binaries, bench = suite.comparison("thrust-idle-", __doc__)
    try:
        for _ in range(int(os.environ.get("ROUNDS", "1"))):
            for binary in binaries:
                port = free_port()
                extra = dict(pair.split("=", 1) for pair in os.environ.get("THRUST_ENV", "").split())
                env = bench.thrust_env(HTTP_PORT=port, **extra)
                measure(bench, binary, [binary, "sleep", "infinity"], env, port, lambda p: [p.pid])
            nginx = ["nginx", "-e", f"{bench.work}/front-error.log", "-c", f"{bench.work}/front.conf",
                     "-g", "daemon off;"]
            measure(bench, "nginx", nginx, None, bench.ports["HTTP_PORT"], lambda p: process_tree(p.pid))
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
