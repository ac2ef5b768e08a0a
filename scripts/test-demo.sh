#!/usr/bin/env bash
# Start-up failures of ./scripts/demo.sh: when file-monitor or fdb-sink cannot start
# (here: its port is taken), the demo must stop with an error that names the process
# that failed and shows the cause from its log, not blame the other one.
#
#   ./scripts/test-demo.sh        (test-all.sh runs it after the demo check)
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
holder_pid=
cleanup() {
  [ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# Ports the kernel reports free right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Holds a listening socket on a port until killed.
hold_port() {
  python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(600)' "$1" &
  holder_pid=$!
  for _ in $(seq 50); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2)' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "could not hold port $1" >&2
  exit 1
}

# The demo's own build, done here so that the time limit below is the start-up's alone.
cargo build --locked -q -p monitor -p fdb-sink

failures=0
# expect_failure <case> <busy: ingest|api|metrics> <process the error must name>
expect_failure() {
  local name=$1 busy=$2 culprit=$3
  local ingest api metrics
  ingest=$(free_port) api=$(free_port) metrics=$(free_port)
  case $busy in
    ingest) hold_port "$ingest" ;;
    api) hold_port "$api" ;;
    metrics) hold_port "$metrics" ;;
  esac
  local rc=0
  DEMO_DIR="$scratch/$name" DEMO_INGEST_PORT=$ingest DEMO_API_PORT=$api DEMO_METRICS_PORT=$metrics \
    timeout 60 ./scripts/demo.sh --check >"$scratch/$name.out" 2>"$scratch/$name.err" || rc=$?
  kill "$holder_pid" 2>/dev/null || true
  wait "$holder_pid" 2>/dev/null || true
  holder_pid=
  local err
  err=$(cat "$scratch/$name.err")
  if [ "$rc" = 124 ]; then
    echo "FAIL $name: demo.sh still waiting after 60 s although the $busy port was taken" >&2
    failures=$((failures + 1))
  elif [ "$rc" = 0 ]; then
    echo "FAIL $name: demo.sh succeeded although the $busy port was taken" >&2
    failures=$((failures + 1))
  elif ! grep -q "^$culprit exited during start-up" <<<"$err" || ! grep -q 'Address already in use' <<<"$err"; then
    echo "FAIL $name: the error does not name $culprit and its cause:" >&2
    printf '    %s\n' "${err//$'\n'/$'\n'    }" >&2
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

expect_failure metrics-port-taken metrics file-monitor
expect_failure ingest-port-taken ingest fdb-sink
expect_failure api-port-taken api fdb-sink

[ "$failures" = 0 ] || { echo "$failures demo start-up check(s) failed" >&2; exit 1; }
echo "demo start-up failures are reported with their cause"
