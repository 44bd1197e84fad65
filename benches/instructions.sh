#!/usr/bin/env bash
# Instructions per request in thrust's own process (callgrind counts them
# exactly, where CPU time on a shared machine moves by a third between
# runs): thrust runs under valgrind in front of the Python test app, 400
# requests warm it up uninstrumented, then 5,000 are counted, HTTP/1.1
# (h2load --h1 -c4), h2c (h2load -c4 -m10) or parked (100 keep-alive
# connections taking turns one request at a time, each after 300 ms idle or
# more: the connection
# is parked between requests and woken for each, as on a busy site where
# most clients are idle). Request logs on (the defaults), written to a file.
#
# Usage: benches/instructions.sh BINARY [h1|h2c|parked]   (prints: instructions per request)
set -euo pipefail
binary=$(realpath "$1")
mode=${2:-h1}
root=$(cd "$(dirname "$0")/.." && pwd)
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
[ "$mode" = h2c ] && export H2C_ENABLED=1
HTTP_PORT=$port valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/out" \
  "$binary" python3 "$root/tests/apps/app.py" > "$work/log" 2>&1 &
vg=$!
trap 'kill -TERM $vg 2>/dev/null || true; wait $vg 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.2
done
load() {
  case "$mode" in
    h2c) h2load -n"$1" -c4 -m10 "http://127.0.0.1:$port/" ;;
    parked) python3 "$root/benches/load/parked_clients.py" "$port" 100 "$1" 0.3 ;;
    *) h2load --h1 -n"$1" -c4 "http://127.0.0.1:$port/" ;;
  esac
}
load 400 > /dev/null
callgrind_control -i on $vg > /dev/null 2>&1
load 5000 | grep -q "5000 succeeded" || { echo "not every request succeeded" >&2; exit 1; }
callgrind_control -i off $vg > /dev/null 2>&1
callgrind_control -d $vg > /dev/null 2>&1
for _ in $(seq 1 50); do
  total=$(cat "$work"/out.* 2>/dev/null | sed -n 's/^totals: //p' | awk '{s += $1} END {print s + 0}')
  [ "$total" -gt 0 ] && break
  sleep 0.2
done
echo "$mode $(basename "$binary"): $((total / 5000)) instructions per request"
