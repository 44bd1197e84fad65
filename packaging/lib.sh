# Helpers the packaging checks share (sourced, not run).

fail() { echo "FAIL: $*"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to 30 s) until thrust on 127.0.0.1:$1 answers /up with OK.
wait_up() {
  local up=""
  for _ in $(seq 1 120); do
    up=$(curl -s --max-time 2 "http://127.0.0.1:$1/up" || true)
    [ "$up" = OK ] && return 0
    sleep 0.25
  done
  return 1
}
