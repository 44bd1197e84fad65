"""HTTP/3 against HTTP/2 over TLS, through the same thrust: requests per
second, latency and thrust's CPU per request for the suite's small dynamic
page (the suite's nginx app behind it), 4 connections x 10 requests in
flight each way. h2 is driven by h2load; h3 by benches/load/h3_load.rs
(Debian's h2load has no HTTP/3), both on one thread. nginx (1.22 in Debian
12, no HTTP/3) is measured over h2 for reference. Request logs on for both
fronts; all processes share the machine's CPUs.

Usage: python3 benches/http3.py BINARY [BINARY ...]   (ROUNDS=3, SECONDS=5)
"""
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, cpu_seconds, free_port, h2load, process_tree, rss_kib, wait_for_200  # noqa: E402
import suite  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECONDS = int(os.environ.get("SECONDS", "5"))
H3_LOAD = os.path.join(ROOT, "target/release/examples/h3_load")


def h3_load(port, cert, seconds, warmup=1):
    out = subprocess.run([H3_LOAD, f"127.0.0.1:{port}", "localhost", cert, "/dynamic", "4", "10", str(warmup),
                          str(seconds)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"h3_load: {out.stderr}")
    return json.loads(out.stdout)


def start_thrust(bench, binary):
    http_port, https_port = free_port(), free_port()
    env = bench.thrust_env(HTTP_PORT=http_port, HTTPS_PORT=https_port, THRUST_HTTP3=1,
                           SSL_CERT_PATH=f"{bench.work}/cert.pem", SSL_KEY_PATH=f"{bench.work}/key.pem")
    thrust = subprocess.Popen([binary, "sleep", "infinity"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    sink = subprocess.Popen(["cat"], stdin=thrust.stdout, stdout=subprocess.DEVNULL)
    wait_for_200(f"http://127.0.0.1:{http_port}/up")
    return thrust, sink, https_port


def measure(pids, run):
    before = cpu_seconds(pids)
    result = run()
    used = cpu_seconds(pids) - before
    return {"rps": result["rps"], "p50": result["p50"], "p99": result["p99"], "errors": result["errors"],
            "cpu_us": used * 1e6 / max(result["requests"], 1), "rss_mib": rss_kib(pids) / 1024}


def main():
    binaries, bench = suite.comparison("thrust-http3-", __doc__)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "h3_load"], cwd=ROOT, check=True)
    cert = f"{bench.work}/cert.pem"
    results = {}
    try:
        bench.nginx = bench.spawn(["nginx", "-e", f"{bench.work}/front-error.log", "-c", f"{bench.work}/front.conf",
                                   "-g", "daemon off;"])
        wait_for_200(f"http://127.0.0.1:{bench.ports['HTTP_PORT']}/dynamic")
        nginx_pids = process_tree(bench.nginx.pid)
        nginx_url = f"https://localhost:{bench.ports['HTTPS_PORT']}/dynamic"
        for round_ in range(ROUNDS):
            for binary in binaries:
                thrust, sink, port = start_thrust(bench, binary)
                url = f"https://localhost:{port}/dynamic"
                log = os.path.join(bench.work, "h2load.log")
                runs = [("h2", lambda: h2load(url, SECONDS, log)),
                        ("h3", lambda: h3_load(port, cert, SECONDS))]
                h2load(url, 1, log)  # warm-up; h3_load warms up itself
                for name, run in (runs if round_ % 2 == 0 else list(reversed(runs))):
                    r = measure([thrust.pid], run)
                    results.setdefault((binary, name), []).append(r)
                    print(f"round {round_ + 1} {binary} {name}: {r['rps']:.0f} req/s, p50 {r['p50']:.2f} ms, "
                          f"p99 {r['p99']:.2f} ms, {r['cpu_us']:.1f} CPU µs/req, RSS {r['rss_mib']:.1f} MiB, "
                          f"{r['errors']} errors", flush=True)
                thrust.terminate()
                thrust.wait()
                sink.wait()
            h2load(nginx_url, 1, os.path.join(bench.work, "h2load.log"))
            r = measure(nginx_pids, lambda: h2load(nginx_url, SECONDS, os.path.join(bench.work, "h2load.log")))
            results.setdefault(("nginx", "h2"), []).append(r)
            print(f"round {round_ + 1} nginx h2: {r['rps']:.0f} req/s, {r['cpu_us']:.1f} CPU µs/req", flush=True)
    finally:
        bench.stop()
    print("| front | protocol | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for (front, name), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        errors = sum(r["errors"] for r in runs)
        print(f"| {front} | {name} | {med['rps']:.0f} | {med['p50']:.2f} | {med['p99']:.2f} | {med['cpu_us']:.1f} | "
              f"{med['rss_mib']:.1f} | {errors} |")


if __name__ == "__main__":
    main()
