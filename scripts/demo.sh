#!/usr/bin/env bash
# The local pipeline on this machine, no Vector, FoundationDB or Kubernetes needed:
#
#   TENANT_ID=… USER_ID=… SESSION_ID=… file-monitor ./demo/workspace | fdb-sink serve --stdin --store embedded:./demo/data
#
# plus the query API on 127.0.0.1:8081 and metrics on :9090 (monitor) and :8080 (sink).
#
#   ./scripts/demo.sh            build (release), start, make a few demo changes, keep running
#   ./scripts/demo.sh --check    same on a debug build, verify the records via the API, stop
#
# Everything lives under ./demo (delete it to start afresh). Ctrl-C stops the pipeline.
# Environment: DEMO_DIR (default ./demo), DEMO_INGEST_PORT (8080), DEMO_API_PORT (8081),
# DEMO_METRICS_PORT (9090), all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[ "${1:-}" = "--check" ] && check=1
profile=release
[ $check = 1 ] && profile=debug

demo=$(mkdir -p "${DEMO_DIR:-demo}" && cd "${DEMO_DIR:-demo}" && pwd)
ws=$demo/workspace
store=embedded:$demo/data
secret=$demo/jwt.secret
tenant=demo user=alice session=demo-session
ingest=127.0.0.1:${DEMO_INGEST_PORT:-8080}
api=127.0.0.1:${DEMO_API_PORT:-8081}
metrics=127.0.0.1:${DEMO_METRICS_PORT:-9090}

echo "building file-monitor and fdb-sink ($profile)…" >&2
if [ $profile = release ]; then
  cargo build --release --locked -q -p monitor -p fdb-sink
else
  cargo build --locked -q -p monitor -p fdb-sink
fi
# Where cargo put the binaries: $CARGO_TARGET_DIR when set (relative to here), else target/.
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
bin=$target_dir/$profile

mkdir -p "$ws" "$demo/data"
[ -s "$secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret"
chmod 600 "$secret"

pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -f "$demo/events.pipe"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The monitor's stdout (NDJSON) goes straight into the sink, through a named pipe so that
# each process can be stopped on its own; both log to demo/*.log.
pipe=$demo/events.pipe
rm -f "$pipe"; mkfifo "$pipe"
# The monitor's lines arrive in order and at once (no collector between), so
# the live feed waits only for what the monitor holds back (--debounce, a
# writer that keeps a file open: about a second) instead of 20 s.
"$bin/fdb-sink" serve --stdin --store "$store" --listen "$ingest" \
  --api-listen "$api" --jwt-secret-file "$secret" --api-follow-delay 3s <"$pipe" 2>"$demo/sink.log" &
sink_pid=$!
TENANT_ID=$tenant USER_ID=$user SESSION_ID=$session \
  "$bin/file-monitor" "$ws" --checksum sha256 --metrics-addr "$metrics" >"$pipe" 2>"$demo/monitor.log" &
monitor_pid=$!
# The monitor stops first (flushing what it holds), then the sink.
pids=("$monitor_pid" "$sink_pid")

# Both must answer /readyz. A process that exits instead (a port in use, a bad flag) is
# named with the end of its log. The monitor is checked first: when it exits, the sink
# sees the end of its input and exits too.
exited() {
  echo "$1 exited during start-up; the end of $2:" >&2
  tail -n 5 "$2" >&2
  echo "(ports: DEMO_INGEST_PORT, DEMO_API_PORT, DEMO_METRICS_PORT)" >&2
  exit 1
}
ready() { curl -fs --max-time 1 "http://$1/readyz" >/dev/null 2>&1; }
answers() { curl -s --max-time 1 -o /dev/null "http://$1/" 2>/dev/null; }
up=0
for _ in $(seq 100); do
  kill -0 "$monitor_pid" 2>/dev/null || exited file-monitor "$demo/monitor.log"
  kill -0 "$sink_pid" 2>/dev/null || exited fdb-sink "$demo/sink.log"
  if ready "$ingest" && ready "$metrics" && answers "$api"; then up=1; break; fi
  sleep 0.1
done
if [ $up = 0 ]; then
  echo "file-monitor or fdb-sink did not answer on $ingest, $api and $metrics within 10 s" >&2
  echo "(another program on one of these ports?); see $demo/monitor.log and $demo/sink.log" >&2
  exit 1
fi

token=$("$bin/fdb-sink" token --jwt-secret-file "$secret" --tenant "$tenant" --user "$user" --role admin --ttl 8h)
(umask 077; echo "$token" > "$demo/token")

# A few changes so there is something to look at: create, update, move, delete.
run="run-$(date +%s)"
mkdir "$ws/$run"
sleep 0.3
echo "hello" > "$ws/$run/hello.txt"
sleep 0.3
echo "world" >> "$ws/$run/hello.txt"
sleep 0.3
mv "$ws/$run/hello.txt" "$ws/$run/renamed.txt"
sleep 0.3
rm "$ws/$run/renamed.txt"

logs_url="http://$api/api/v5/agents/$session/logs"
if [ $check = 1 ]; then
  body=
  for _ in $(seq 100); do
    body=$(curl -fs -H "Authorization: Bearer $token" "$logs_url?path_prefix=$run/" || true)
    case "$body" in *'"delete"'*) break ;; esac
    sleep 0.2
  done
  for t in create update move delete; do
    echo "$body" | grep -q "\"event_type\":\"$t\"" || { echo "demo check: no $t record under $run/ in: $body" >&2; exit 1; }
  done
  echo "demo check: create, update, move and delete records were stored and queried back"
  exit 0
fi

cat <<TXT

The pipeline is running (logs: $demo/monitor.log, $demo/sink.log). Change files in
  $ws
and look at what was recorded:

  # the session's audit records, time-ordered (JSON page with next_cursor)
  curl -s -H "Authorization: Bearer \$(cat $demo/token)" '$logs_url' | python3 -m json.tool

  # live feed of new records (Server-Sent Events), each a few seconds after it happened
  curl -sN -H "Authorization: Bearer \$(cat $demo/token)" '$logs_url?follow=true'

  # metrics
  curl -s http://$metrics/metrics | grep '^fs_monitor_'
  curl -s http://$ingest/metrics  | grep '^fdb_sink_'

After stopping (Ctrl-C), the store can be exported as NDJSON:
  $bin/fdb-sink export --store $store --tenant $tenant

Press Ctrl-C to stop.
TXT
wait
