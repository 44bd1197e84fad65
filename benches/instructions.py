"""Instructions and allocations per request, counted under valgrind's
callgrind, for four shapes, against the baseline in
benches/instructions-baseline.json: the guard scripts/test runs.

Wall-clock CPU on a shared machine moves by a third from run to run; a
count of instructions repeats within about 1%. thrust runs under callgrind
with its defaults (request log on, written to a file) in front of the
Python test app; WARMUP requests are not counted, then instrumentation is
switched on for COUNT requests (h2load, four keep-alive connections):

  proxied   GET / over HTTP/1.1, the app's 1 KiB answer
  hit       GET of a stored answer (1 KiB, Cache-Control: public)
  h2c       GET / over HTTP/2 without TLS, ten streams a connection
  sendfile  GET that the app answers with X-Sendfile naming a 1 KiB file

Counted per request: the instructions of thrust's own binary (its code,
the crates and jemalloc compiled into it: what a change to thrust moves,
and the same on any x86-64 machine), with those of the shared libraries
(libc's memcpy and system call wrappers, whose variants differ by CPU)
shown beside; and the allocations (calls into jemalloc's malloc, mallocx,
calloc, realloc, rallocx, or libc's in a build without jemalloc). A shape fails when either count is more than
TOLERANCE over its baseline.

Usage: python3 benches/instructions.py [BINARY] [--update] [SHAPE ...]
  BINARY    default target/release/thrust
  --update  writes the counts measured as the new baseline (commit it
            with the reason the counts moved)
  KEEP=DIR  keeps callgrind's output of each shape in DIR/SHAPE/ (for
            `callgrind_annotate --inclusive=no`: where the count goes)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ensure_tools, free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(ROOT, "benches/instructions-baseline.json")
SHAPES = ["proxied", "hit", "h2c", "sendfile"]
WARMUP = 300
COUNT = 2000
TOLERANCE = 0.05
# jemalloc's entry points, and libc's for builds from before thrust
# carried jemalloc (the history in benches/RESULTS.md is counted too).
ALLOCATORS = {"_rjem_malloc", "_rjem_mallocx", "_rjem_calloc", "_rjem_realloc", "_rjem_rallocx",
              "malloc", "calloc", "realloc"}


def target(shape, work):
    if shape == "hit":
        return "/text?bytes=1024&h_Cache_Control=public,max-age=600"
    if shape == "sendfile":
        path = os.path.join(work, "file.txt")
        with open(path, "w") as f:
            f.write("x" * 1023 + "\n")
        return f"/sendfile?path={path}"
    return "/"


def load(shape, port, path, count):
    url = f"http://127.0.0.1:{port}{path}"
    cmd = ["h2load", f"-n{count}", "-c4"] + (["-m10"] if shape == "h2c" else ["--h1"]) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    if f"{count} succeeded" not in out:
        raise RuntimeError(f"{shape}: not every request succeeded:\n{out}")


def costs(out_file, binary):
    """(Ir of `binary`'s own code, Ir of everything, allocation calls) in a
    callgrind output file."""
    names, objects = {}, {}
    own = total = allocations = 0
    current_object = callee = None
    after_calls = in_binary = False
    binary = os.path.realpath(binary)

    def named(table, value):
        match = re.match(r"\((\d+)\)(?: (.*))?", value)
        if not match:
            return value
        ident, name = match.groups()
        if name is not None:
            table[ident] = name
        return table.get(ident)

    with open(out_file, errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                current_object = named(objects, line[3:].strip())
                in_binary = current_object is not None and os.path.realpath(current_object) == binary
            elif line.startswith("cob="):
                named(objects, line[4:].strip())
            elif line.startswith("fn="):
                named(names, line[3:].strip())
            elif line.startswith("cfn="):
                callee = named(names, line[4:].strip())
            elif line.startswith("calls="):
                if callee in ALLOCATORS:
                    allocations += int(line[6:].split()[0])
                after_calls = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_calls:
                    after_calls = False
                    continue
                fields = line.split()
                if len(fields) >= 2:
                    cost = int(fields[1])
                    total += cost
                    if in_binary:
                        own += cost
    return own, total, allocations


def counted(vg, shape, port, path, work):
    """WARMUP requests uncounted, then COUNT with `vg`'s instrumentation on;
    the callgrind output files in `work` once they are written whole."""
    load(shape, port, path, WARMUP)
    subprocess.run(["callgrind_control", "-i", "on", str(vg.pid)], capture_output=True)
    load(shape, port, path, COUNT)
    subprocess.run(["callgrind_control", "-i", "off", str(vg.pid)], capture_output=True)
    subprocess.run(["callgrind_control", "-d", str(vg.pid)], capture_output=True)
    dumped = []
    for _ in range(100):
        dumped = [os.path.join(work, f) for f in os.listdir(work) if f.startswith("out.")]
        if dumped and all("totals:" in open(f, errors="replace").read() for f in dumped):
            break
        time.sleep(0.2)
    return dumped


def measure(binary, shape):
    work = tempfile.mkdtemp(prefix=f"thrust-instructions-{shape}-")
    port = free_port()
    env = dict(os.environ, HTTP_PORT=str(port), TARGET_PORT=str(free_port()))
    if shape == "h2c":
        env["H2C_ENABLED"] = "1"
    out = os.path.join(work, "out")
    with open(os.path.join(work, "log"), "w") as log:
        vg = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                               binary, "python3", os.path.join(ROOT, "tests/apps/app.py")],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        path = target(shape, work)
        deadline = time.time() + 60
        while subprocess.run(["curl", "-fs", "-o", "/dev/null", f"http://127.0.0.1:{port}/up"]).returncode != 0:
            if time.time() > deadline or vg.poll() is not None:
                raise RuntimeError(f"{shape}: thrust under valgrind did not start")
            time.sleep(0.2)
        own = total = allocations = 0
        for f in counted(vg, shape, port, path, work):
            o, t, a = costs(f, binary)
            own, total, allocations = own + o, total + t, allocations + a
        if own == 0 or allocations == 0:
            raise RuntimeError(f"{shape}: callgrind's counts name nothing in {binary}")
        return {"instructions": round(own / COUNT), "all_instructions": round(total / COUNT),
                "allocations": round(allocations / COUNT, 1)}
    finally:
        vg.terminate()
        vg.wait()
        if os.environ.get("KEEP"):
            kept = os.path.join(os.environ["KEEP"], shape)
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(work, kept)
        shutil.rmtree(work, ignore_errors=True)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    update = "--update" in sys.argv[1:]
    binary = os.path.abspath(args.pop(0)) if args and args[0] not in SHAPES else os.path.join(ROOT, "target/release/thrust")
    shapes = args or SHAPES
    ensure_tools([("valgrind", "valgrind"), ("h2load", "nghttp2-client"), ("curl", "curl")])
    with ThreadPoolExecutor(max_workers=2) as pool:
        measured = dict(zip(shapes, pool.map(lambda s: measure(binary, s), shapes)))
    baseline = json.load(open(BASELINE)) if os.path.exists(BASELINE) else {}
    failed = []
    print(f"| shape ({COUNT} requests counted) | instructions a request (thrust's binary) | with shared libraries "
          "| allocations a request | baseline (instructions / allocations) |")
    print("|---|---|---|---|---|")
    for shape in shapes:
        now, base = measured[shape], baseline.get(shape)
        shown = f"{base['instructions']:,} / {base['allocations']}" if base else "none"
        print(f"| {shape} | {now['instructions']:,} | {now['all_instructions']:,} | {now['allocations']} | {shown} |")
        if base and not update:
            for key in ("instructions", "allocations"):
                if now[key] > base[key] * (1 + TOLERANCE):
                    failed.append(f"{shape}: {key} {now[key]:,} per request, baseline {base[key]:,} (over by more than "
                                  f"{TOLERANCE:.0%})")
    if update:
        baseline.update({s: {k: measured[s][k] for k in ("instructions", "allocations")} for s in shapes})
        with open(BASELINE, "w") as f:
            json.dump(baseline, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"baseline written: {BASELINE}")
    if failed:
        print("\n".join(["instruction guard failed:"] + failed +
                         [f"measure: python3 benches/instructions.py {binary} {' '.join(shapes)}",
                          "a deliberate change: python3 benches/instructions.py --update, and say why in the commit"]),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
