"""Restarts under load: `thrust restart` RESTARTS times while wrk keeps
CONNECTIONS keep-alive connections busy with proxied pages of the demo app
under Puma, and a few clients read its event stream (2.5 s each, so many
are in flight at every switch).

A failed request is any wrk counts as an error (connect, read, write,
timeout: over 2 s) or a status other than 2xx/3xx, any page that took 2 s
or more in thrust's request log, and any event stream that does not arrive
whole. Each restart must exit 0, and every replaced copy must exit.

Usage: python3 reliability/restart.py [--restarts 20] [--connections 50] [--puma-config FILE]
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, THRUST, Thrust, percentile, prepare  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "benches"))
from benchlib import ensure_tools  # noqa: E402

EVENTS = 5  # the demo's /events sends five, half a second apart


def stream_events(port, stop, outcomes):
    """Reads /events again and again; records whether each arrived whole."""
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/events")
            response = conn.getresponse()
            body = response.read()
            outcomes.append(response.status == 200 and body.count(b"data: event") == EVENTS)
        except (OSError, http.client.HTTPException):
            outcomes.append(False)
        finally:
            conn.close()


def wrk_counts(output):
    """Requests, and failed requests, from wrk's summary."""
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    failed = 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        failed += sum(int(n) for n in errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        failed += int(non_2xx.group(1))
    return requests, failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--puma-config", default="puma.rb")
    args = parser.parse_args()
    prepare()
    ensure_tools([("wrk", "wrk")])

    thrust = Thrust(["puma", "-C", args.puma_config, "config.ru"])
    try:
        thrust.wait_ready()
        # Warm-up: the measured run starts with thrust's connections to Puma
        # open and accepted. From cold, Puma 5 accepts only as many of a
        # burst of new connections as it has idle threads, and leaves the
        # rest in its listen queue while the accepted ones keep it busy
        # (docs/reliability.md): that happens at start-up with or without
        # restarts, and is not what this script measures.
        subprocess.run(["wrk", "-t2", f"-c{args.connections}", "-d3s", f"http://127.0.0.1:{thrust.port}/"],
                       capture_output=True, check=True)
        time.sleep(1)
        wrk = subprocess.Popen(
            ["wrk", "-t2", f"-c{args.connections}", "-d600s", f"http://127.0.0.1:{thrust.port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        stop = threading.Event()
        streams = []
        readers = [threading.Thread(target=stream_events, args=(thrust.port, stop, streams))
                   for _ in range(args.streams)]
        for reader in readers:
            reader.start()
        time.sleep(2)

        took, refused = [], []
        env = dict(os.environ, HTTP_PORT=str(thrust.port))
        for _ in range(args.restarts):
            started = time.time()
            done = subprocess.run([THRUST, "restart"], env=env, capture_output=True, text=True)
            took.append(time.time() - started)
            if done.returncode != 0:
                refused.append(done.stderr.strip())
            time.sleep(0.5)
        # Let the last copy take load for a moment before counting.
        time.sleep(3)
        wrk.send_signal(signal.SIGINT)
        output, _ = wrk.communicate(timeout=30)
        stop.set()
        for reader in readers:
            reader.join(timeout=35)

        requests, failed = wrk_counts(output)
        log = thrust.text()
        # wrk counts a request only once it completes: the request log also
        # shows any that was still waiting when wrk stopped.
        pages = [json.loads(line)["dur"] for line in log.splitlines()
                 if line.startswith('{"') and '"msg":"Request"' in line and '"path":"/"' in line]
        slowest = max(pages, default=0)
        exited = log.count('"msg":"Previous copy of the app exited"')
        killed = log.count("still running THRUST_SHUTDOWN_TIMEOUT after SIGTERM")
        whole = sum(streams)
        print(f"restarts: {args.restarts - len(refused)} of {args.restarts} succeeded; "
              f"each took {percentile(took, 50):.2f} s median, {max(took):.2f} s max")
        print(f"replaced copies exited: {exited} (killed after the timeout: {killed})")
        print(f"wrk, {args.connections} connections: {requests} requests, {failed} failed")
        print(f"event streams: {whole} of {len(streams)} whole")
        print(f"pages in thrust's request log: {len(pages)}, p99 {percentile(pages, 99)} ms, slowest {slowest} ms")
        for reason in refused:
            print(f"  restart failed: {reason}")
        ok = (not refused and failed == 0 and whole == len(streams) and exited == args.restarts
              and slowest < 2000)
        if not ok:
            print(output)
        sys.exit(0 if ok else 1)
    finally:
        thrust.stop()


if __name__ == "__main__":
    main()
