"""Many keep-alive clients at a modest rate: CLIENTS connections, each
asking for the proxied page RPS times a second, through one or more thrust
binaries and nginx (benches/nginx/front.conf, its worker_connections raised
to hold the clients), in front of the suite's nginx app.

The shape of a busy site's front: most connections idle most of the time,
the work spread thin over all of them. What counts is the latency a client
sees (p99 over every request due after the warm-up, counted from when it
was due, so a front that falls behind is charged for the wait), the front's
peak RSS with all of them open, and its CPU per request. The clients are
benches/load/paced_clients.rs (one thread, tokio): they start spread over
the first second, so the requests arrive evenly, not in bursts (h2load's
--rps sends every client's request at the same instant). Each front is
started fresh, gets WARMUP seconds, then SECONDS measured; the fronts
take turns, ROUNDS times, the order alternating. thrust runs with its
defaults (request log to a file), nginx with the suite's JSON access log.
The open-file limit is raised to the hard limit for every process (20,000
on the machine of the committed runs; containers get 1,048,576 from Docker
by default): thrust's default connection limit is half of it, which must
hold CLIENTS.

Usage: python3 benches/many_clients.py BINARY [BINARY ...]
       (CLIENTS=10000, RPS=1, WARMUP=10, SECONDS=30, ROUNDS=1 by default)
"""
import json
import os
import resource
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, PeakRss, cpu_seconds, free_port, fresh_front, process_tree  # noqa: E402
import suite  # noqa: E402

CLIENTS = int(os.environ.get("CLIENTS", "10000"))
RPS = int(os.environ.get("RPS", "1"))
WARMUP = int(os.environ.get("WARMUP", "10"))
SECONDS = int(os.environ.get("SECONDS", "30"))
ROUNDS = int(os.environ.get("ROUNDS", "1"))
PACED_CLIENTS = os.path.join(ROOT, "target/release/examples/paced_clients")


def load(port):
    """benches/load/paced_clients.rs: CLIENTS clients at RPS each; its counts
    and the latency percentiles (ms) of the requests due after warm-up."""
    out = subprocess.run([PACED_CLIENTS, f"127.0.0.1:{port}", "/dynamic", str(CLIENTS), str(RPS), str(WARMUP),
                          str(SECONDS)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def measure(bench, name, cmd, env, port, pids_of):
    log = open(os.path.join(bench.work, "front.log"), "w")
    with fresh_front(cmd, env, port, pids_of, stdout=log) as (_, pids, before):
        # The CPU of the measured seconds only, whose requests are counted.
        cpu_at_warm = []
        timer = threading.Timer(WARMUP, lambda: cpu_at_warm.append(cpu_seconds(pids)))
        timer.start()
        with PeakRss(pids) as peak:
            r = load(port)
        timer.cancel()
        cpu = cpu_seconds(pids) - cpu_at_warm[0]
        print(f"{name}: {r['requests']} requests measured, {r['errors']} errors; latency p50 {r['p50']:.2f} ms, "
              f"p99 {r['p99']:.2f} ms, p99.9 {r['p999']:.2f} ms, max {r['max']:.1f} ms; "
              f"RSS {before / 1024:.1f} MiB before, peak {peak.peak_kib / 1024:.1f} MiB "
              f"({(peak.peak_kib - before) / CLIENTS:.1f} KiB per client); "
              f"CPU {cpu * 1e6 / max(1, r['requests']):.1f} µs per request", flush=True)


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "paced_clients"], cwd=ROOT, check=True)
    _, files = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    if files // 2 < CLIENTS:
        sys.exit(f"the open-file limit ({files}) holds fewer than {CLIENTS} clients in thrust's default")
    binaries, bench = suite.comparison("thrust-many-", __doc__)
    conf = os.path.join(bench.work, "front.conf")
    with open(conf) as f:
        text = f.read()
    # Room for every client in either worker (accepts are not shared evenly).
    text = text.replace("worker_connections 8192;", f"worker_connections {CLIENTS + 2048};")
    text = text.replace("worker_rlimit_nofile 16384;", f"worker_rlimit_nofile {files};")
    with open(conf, "w") as f:
        f.write(text)
    print(f"{CLIENTS} clients x {RPS} request/s, {WARMUP} s warm-up, {SECONDS} s measured", flush=True)
    try:
        fronts = [(binary, binary) for binary in binaries] + [("nginx", None)]
        for i in range(ROUNDS):
            for name, binary in fronts if i % 2 == 0 else list(reversed(fronts)):
                if binary:
                    port = free_port()
                    measure(bench, name, [binary, "sleep", "infinity"], bench.thrust_env(HTTP_PORT=port), port,
                            lambda p: [p.pid])
                else:
                    nginx = ["nginx", "-e", f"{bench.work}/front-error.log", "-c", conf, "-g", "daemon off;"]
                    measure(bench, "nginx", nginx, None, bench.ports["HTTP_PORT"], lambda p: process_tree(p.pid))
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
