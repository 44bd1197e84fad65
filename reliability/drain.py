"""Drain under load: SIGTERM while 50 clients run a mix of proxied pages,
uploads, cached assets and event streams against thrust in front of Puma.

Every request sent before the signal must complete whole; requests sent
after it may be refused, and are counted apart. With --stop-at-signal the
clients start no new request once the signal is sent (what a deploy looks
like once the load balancer has stopped routing to this copy); by default
they keep sending through the drain. /up must answer 503 (never
200) once the signal is in, and thrust must exit with the app's status
(Puma: 0). Repeated REPEAT times; the failures are summed.

Usage: python3 reliability/drain.py [--repeat 20] [--clients 50] [--stop-at-signal] [--puma-config FILE]
"""
import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ASSET, DEMO, Thrust, get, prepare  # noqa: E402

UPLOAD = b"u" * (256 * 1024)
EVENTS = 5  # the demo's /events sends five, half a second apart


def one_request(conn, kind):
    """Sends one request of `kind` on `conn`; returns the time it was sent
    and whether it completed whole."""
    if kind == "upload":
        conn.putrequest("POST", "/")
        conn.putheader("Content-Length", str(len(UPLOAD)))
        conn.endheaders()
        sent = time.time()
        conn.send(UPLOAD)
    else:
        path = {"page": "/", "asset": ASSET, "events": "/events"}[kind]
        conn.putrequest("GET", path)
        conn.endheaders()
        sent = time.time()
    response = conn.getresponse()
    body = response.read()
    whole = response.status == 200 and (kind != "events" or body.count(b"data: event") == EVENTS)
    return sent, whole, response.status


def client(port, index, stop, records, signalled):
    kinds = ["page", "upload", "asset", "page", "events"] if index % 10 == 0 else ["page", "upload", "asset", "page"]
    conn = None
    i = 0
    while not stop.is_set() and not signalled.is_set():
        kind = kinds[i % len(kinds)]
        i += 1
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        attempt = time.time()
        try:
            sent, whole, status = one_request(conn, kind)
            records.append((sent, whole, kind, status))
            if not whole:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            records.append((attempt, False, kind, type(e).__name__))
            conn.close()
            conn = None
            time.sleep(0.05)


def app_errors(log):
    """How often each reason for a 502 appears in thrust's log."""
    counts = {}
    for line in log.splitlines():
        if line.startswith("{") and "answering 502" in line:
            entry = json.loads(line)
            reason = entry.get("error", entry["msg"]).split(": ")[-1]
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def repetition(clients, stop_at_signal, puma_config):
    thrust = Thrust(["puma", "-C", puma_config, "config.ru"])
    try:
        thrust.wait_ready()
        stop, records, signal_sent = threading.Event(), [], threading.Event()
        # Clients that stop at the signal watch `signal_sent`; the others an
        # event never set.
        watched = signal_sent if stop_at_signal else threading.Event()
        threads = [threading.Thread(target=client, args=(thrust.port, i, stop, records, watched))
                   for i in range(clients)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        signalled = time.time()
        signal_sent.set()
        thrust.proc.send_signal(signal.SIGTERM)
        probes = []  # (seconds after the signal, /up's status)
        while thrust.proc.poll() is None and time.time() - signalled < 40:
            try:
                probes.append((time.time() - signalled, get(thrust.port, "/up", timeout=2)[0]))
            except OSError:
                probes.append((time.time() - signalled, "refused"))
            time.sleep(0.02)
        first_503 = next((i for i, (_, status) in enumerate(probes) if status == 503), None)
        ok_after_503 = first_503 is not None and any(s == 200 for _, s in probes[first_503:])
        drained_s = time.time() - signalled
        stop.set()
        for t in threads:
            t.join(40)
        code = thrust.proc.wait(40)
        before = [r for r in records if r[0] < signalled]
        failed = [r for r in before if not r[1]]
        after = [r for r in records if r[0] >= signalled]
        return {
            "before": len(before), "failed": failed, "after": len(after),
            "after_ok": sum(1 for r in after if r[1]), "code": code, "drain_s": drained_s,
            "to_503_ms": None if first_503 is None else probes[first_503][0] * 1000, "ok_after_503": ok_after_503,
            "failed_by": sorted({str(r[3]) for r in failed}),
            "app_errors": app_errors(thrust.text()),
            "log": thrust.text() if code != 0 or ok_after_503 else "",
        }
    finally:
        thrust.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--stop-at-signal", action="store_true")
    parser.add_argument("--puma-config", default="puma.rb", help="relative to demo/")
    args = parser.parse_args()
    prepare()
    total_before = total_failed = bad_exits = up_wrong = 0
    for n in range(1, args.repeat + 1):
        r = repetition(args.clients, args.stop_at_signal, os.path.join(DEMO, args.puma_config))
        total_before += r["before"]
        total_failed += len(r["failed"])
        bad_exits += r["code"] != 0
        up_wrong += r["to_503_ms"] is None or r["ok_after_503"]
        to_503 = "never" if r["to_503_ms"] is None else f"{r['to_503_ms']:.0f} ms"
        print(f"run {n}: {r['before']} requests sent before SIGTERM, {len(r['failed'])} failed {r['failed_by']}; "
              f"after it {r['after']} sent, {r['after_ok']} answered whole; /up 503 after {to_503}"
              f"{', then 200 again' if r['ok_after_503'] else ''}; exit {r['code']} after {r['drain_s']:.1f} s",
              flush=True)
        if r["app_errors"]:
            print(f"  502s in thrust's log, by cause: {r['app_errors']}")
        if r["log"]:
            print("  thrust's log (last lines):\n    " + "\n    ".join(r["log"].splitlines()[-15:]))
    print(f"\n{args.repeat} runs: {total_before} requests sent before SIGTERM, {total_failed} failed "
          f"(goal 0); runs where /up did not turn to 503 and stay there: {up_wrong}; "
          f"exits other than the app's 0: {bad_exits}")
    sys.exit(1 if total_failed or bad_exits or up_wrong else 0)


if __name__ == "__main__":
    main()
