#!/usr/bin/env bash
# Tests deploy/docker/export-audit.sh, the daily export job's entry point:
#  - bad configuration fails fast with exit 2 and a message naming the variable;
#  - with a built fdb-sink ({$CARGO_TARGET_DIR,target}/{release,debug}/fdb-sink), a real export
#    from an embedded store: only the asked tenant and day, gzip NDJSON, at
#    <dest>/<day>/<tenant>.ndjson.gz, for every tenant (EXPORT_TENANTS=all) or
#    the listed ones (failing when the list leaves a tenant with records out),
#    the day's dead letters at <dest>/dead-letters/<day>.ndjson.gz, and a
#    rerun refuses to overwrite it;
#  - records stored late through `fdb-sink serve` (POST /v1/events): the day's
#    export clears its markers, an earlier day is exported again to
#    <dest>/<day>/<tenant>.late-<stamp>.ndjson.gz and its marker cleared, a later
#    day's marker is left, a second run exports nothing again, and a failed
#    re-export fails the job but keeps its marker while the day is exported.
set -euo pipefail
cd "$(dirname "$0")/../.."
script=deploy/docker/export-audit.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
expect_usage_error() { # description expected-message env...
  local desc=$1 msg=$2; shift 2
  local out code=0
  out=$(env -i PATH="$PATH" "$@" bash "$script" 2>&1) || code=$?
  if [ "$code" = 2 ] && grep -q -- "$msg" <<<"$out"; then
    echo "ok   $desc"
  else
    echo "FAIL $desc: exit $code, output: $out"; fails=$((fails + 1))
  fi
}
expect_usage_error "no tenants" "EXPORT_TENANTS is empty" EXPORT_DEST=file://$tmp/out
expect_usage_error "only separators as tenants" "EXPORT_TENANTS is empty" EXPORT_TENANTS=" , " EXPORT_DEST=file://$tmp/out
expect_usage_error "no destination" "EXPORT_DEST is empty" EXPORT_TENANTS=t1
expect_usage_error "unsupported destination" "must start with gs:// or file:///" EXPORT_TENANTS=t1 EXPORT_DEST=s3://bucket
expect_usage_error "day that is not a date" "EXPORT_DAY is not a date" EXPORT_TENANTS=t1 EXPORT_DEST=file://$tmp/out EXPORT_DAY=yesterday-ish

sink=""
target_dir=${CARGO_TARGET_DIR:-target}   # where cargo builds (relative to the checkout)
for candidate in "$target_dir/release/fdb-sink" "$target_dir/debug/fdb-sink"; do
  if [ -x "$candidate" ] && "$candidate" late --help >/dev/null 2>&1; then sink=$candidate; break; fi
done
if [ -z "$sink" ]; then
  echo "skip real export: no built fdb-sink with the late command (cargo build -p fdb-sink)"
else
  store="embedded:$tmp/store"
  # Two tenants, two days: only t1 on 2026-11-25 must come out.
  python3 - "$tmp/events.ndjson" <<'PY'
import json, sys, uuid
# One monitor per tenant: a monitor belongs to one tenant.
mon = {t: str(uuid.uuid4()) for t in ("t1", "t2")}
lines = []
for seq, (tenant, day, path) in enumerate([
        ("t1", "2026-11-25", "a.txt"), ("t1", "2026-11-25", "b.txt"),
        ("t2", "2026-11-25", "c.txt"), ("t1", "2026-11-26", "d.txt")], start=1):
    lines.append(json.dumps({
        "schema": "file-event/1", "event_id": str(uuid.uuid4()), "monitor_id": mon[tenant], "seq": seq,
        "timestamp": f"{day}T12:00:00.000000000Z", "event_type": "create", "kind": "file",
        "path": path, "size": 1, "tenant_id": tenant, "user_id": "u1", "session_id": "s1"}))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
  "$sink" import --store "$store" "$tmp/events.ndjson" >/dev/null 2>"$tmp/import.log"
  paths() { gzip -dc "$1" | grep -o '"path":"[^"]*"' | sort | tr '\n' ' '; }
  run_export() { # tenants dest-dir log
    FDB_SINK=$sink EXPORT_STORE=$store EXPORT_TENANTS=$1 EXPORT_DAY=2026-11-25 \
      EXPORT_DEST=file://$2 bash "$script" 2>"$3"
  }
  # EXPORT_TENANTS=all: every tenant of the store, only that day.
  if run_export all "$tmp/archive" "$tmp/log"; then
    got="$(paths "$tmp/archive/2026-11-25/t1.ndjson.gz")| $(paths "$tmp/archive/2026-11-25/t2.ndjson.gz")"
    if [ "$got" = '"path":"a.txt" "path":"b.txt" | "path":"c.txt" ' ] \
       && grep -q "tenant=t1 records=2 " "$tmp/log"; then
      echo "ok   real export of every tenant, 2026-11-25: $got"
    else
      echo "FAIL real export returned: $got"; cat "$tmp/log"; fails=$((fails + 1))
    fi
    if run_export all "$tmp/archive" /dev/null; then
      echo "FAIL a rerun overwrote an existing archive"; fails=$((fails + 1))
    else
      echo "ok   rerun refuses to overwrite the archive"
    fi
  else
    echo "FAIL real export failed:"; cat "$tmp/log"; fails=$((fails + 1))
  fi
  # A line the sink refused is archived under dead-letters/<day it was
  # received>, with its exact bytes and reason, apart from every tenant.
  today=$(date -u +%F)
  printf '%s\n' '{"schema":"file-event/1","tenant_id":"t1","note":"refused"}' >"$tmp/bad.ndjson"
  "$sink" import --store "$store" "$tmp/bad.ndjson" >/dev/null 2>>"$tmp/import.log"
  code=0
  FDB_SINK=$sink EXPORT_STORE=$store EXPORT_TENANTS=all EXPORT_DAY=$today \
    EXPORT_DEST=file://$tmp/today bash "$script" 2>"$tmp/log3" || code=$?
  dl="$tmp/today/dead-letters/$today.ndjson.gz"
  if [ "$code" = 0 ] && [ -f "$dl" ] && [ "$(gzip -dc "$dl" | wc -l)" = 1 ] \
     && gzip -dc "$dl" | grep -q '"schema":"fdb-sink-dead-letter/1".*refused' \
     && ! gzip -dc "$tmp/today/$today/t1.ndjson.gz" 2>/dev/null | grep -q refused; then
    echo "ok   the day's dead letters archived apart: dead-letters/$today.ndjson.gz"
  else
    echo "FAIL dead letters: exit $code"; cat "$tmp/log3"; fails=$((fails + 1))
  fi
  # gs://: the upload must fail when the object exists. `gcloud storage cp
  # --if-generation-match=0` does (Cloud Storage's precondition for "no live
  # object"); --no-clobber skips the copy and exits 0. A stand-in gcloud on
  # PATH records the arguments it was given.
  mkdir -p "$tmp/bin"
  printf '#!/bin/sh\necho "$@" >>"%s"\n' "$tmp/gcloud.args" >"$tmp/bin/gcloud"
  chmod +x "$tmp/bin/gcloud"
  code=0
  PATH="$tmp/bin:$PATH" FDB_SINK=$sink EXPORT_STORE=$store EXPORT_TENANTS=t1,t2 EXPORT_DAY=2026-11-25 \
    EXPORT_DEST=gs://bucket/prefix bash "$script" 2>"$tmp/log4" || code=$?
  if [ "$code" = 0 ] && grep -q -- "storage cp --if-generation-match=0 .* gs://bucket/prefix/2026-11-25/t1.ndjson.gz" "$tmp/gcloud.args" \
     && ! grep -q -- "--no-clobber" "$tmp/gcloud.args" && [ "$(wc -l <"$tmp/gcloud.args")" = 3 ]; then
    echo "ok   gs:// uploads only where no object exists (--if-generation-match=0)"
  else
    echo "FAIL gs:// upload: exit $code, gcloud got:"; cat "$tmp/gcloud.args" "$tmp/log4"; fails=$((fails + 1))
  fi
  # A list that leaves a tenant with records out: the listed one is archived,
  # and the job fails naming the one left out.
  code=0
  run_export t1 "$tmp/listed" "$tmp/log2" || code=$?
  got=$(paths "$tmp/listed/2026-11-25/t1.ndjson.gz" 2>/dev/null || true)
  if [ "$code" = 1 ] && [ "$got" = '"path":"a.txt" "path":"b.txt" ' ] \
     && grep -q 'not archived): t2;' "$tmp/log2" && [ ! -e "$tmp/listed/2026-11-25/t2.ndjson.gz" ]; then
    echo "ok   a list without t2 archives t1 and fails naming t2"
  else
    echo "FAIL list without t2: exit $code, t1: $got"; cat "$tmp/log2"; fails=$((fails + 1))
  fi

  # Records stored late, through a real `fdb-sink serve`: of EXPORT_DAY (3 days
  # ago), of an earlier day (5 days ago) and of a later one (2 days ago).
  d3=$(date -u -d '3 days ago' +%F); d5=$(date -u -d '5 days ago' +%F); d2=$(date -u -d '2 days ago' +%F)
  late_store="embedded:$tmp/late-store"
  post_late() { # ndjson-file
    local port pid ok=0
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$sink" serve --store "$late_store" --listen "127.0.0.1:$port" --late-after 1h 2>>"$tmp/serve.log" &
    pid=$!
    for _ in $(seq 100); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    curl -sf -X POST -H 'Content-Type: application/x-ndjson' --data-binary "@$1" \
      "http://127.0.0.1:$port/v1/events" >"$tmp/post.json" || ok=1
    kill -TERM "$pid"; wait "$pid" || true
    return "$ok"
  }
  python3 - "$tmp/late.ndjson" "$d3" "$d5" "$d2" <<'PY'
import json, sys, uuid
# One monitor per tenant: a monitor belongs to one tenant.
mon = {t: str(uuid.uuid4()) for t in ("t1", "t2")}
lines = []
for seq, (tenant, day, path) in enumerate([
        ("t1", sys.argv[2], "day-a.txt"), ("t1", sys.argv[2], "day-b.txt"), ("t2", sys.argv[2], "day-c.txt"),
        ("t1", sys.argv[3], "early.txt"), ("t2", sys.argv[4], "later.txt")], start=1):
    lines.append(json.dumps({
        "schema": "file-event/1", "event_id": str(uuid.uuid4()), "monitor_id": mon[tenant], "seq": seq,
        "timestamp": f"{day}T12:00:00.000000000Z", "event_type": "create", "kind": "file",
        "path": path, "size": 1, "tenant_id": tenant, "user_id": "u1", "session_id": "s1"}))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
  markers() { "$sink" late --store "$late_store" 2>/dev/null | tr '\n' ';'; }
  late_objects() { find "$1" -name '*.late-*.ndjson.gz' 2>/dev/null | sort; }
  if ! post_late "$tmp/late.ndjson"; then
    echo "FAIL storing late records through fdb-sink serve:"; cat "$tmp/serve.log"; fails=$((fails + 1))
  elif [ "$(markers)" != "$d5 t1 1;$d3 t1 2;$d3 t2 1;$d2 t2 1;" ]; then
    echo "FAIL markers after the late records: $(markers)"; fails=$((fails + 1))
  else
    echo "ok   late records stored through serve are marked: $(markers)"
    run_late() { # dest-dir log
      FDB_SINK=$sink EXPORT_STORE=$late_store EXPORT_TENANTS=all EXPORT_DAY=$d3 \
        EXPORT_DEST=file://$1 bash "$script" 2>"$2"
    }
    code=0
    run_late "$tmp/late-archive" "$tmp/late.log" || code=$?
    objs=$(late_objects "$tmp/late-archive")
    if [ "$code" = 0 ] && [ "$(paths "$tmp/late-archive/$d3/t1.ndjson.gz")" = '"path":"day-a.txt" "path":"day-b.txt" ' ] \
       && [ "$(wc -l <<<"$objs")" = 1 ] \
       && [[ "$objs" =~ /$d5/t1\.late-[0-9]{8}T[0-9]{6}Z\.ndjson\.gz$ ]] \
       && [ "$(paths "$objs")" = '"path":"early.txt" ' ] \
       && [ "$(markers)" = "$d2 t2 1;" ] \
       && grep -q "late tenant=t1 day=$d5 records=1 -> " "$tmp/late.log" \
       && grep -q "late day=$d3 tenant=t1 count=2 marker cleared" "$tmp/late.log"; then
      echo "ok   the day exported, $d5 re-exported to ${objs#"$tmp/late-archive/"}, both markers cleared, $d2 left"
    else
      echo "FAIL late re-export: exit $code, objects: $objs, markers: $(markers)"; cat "$tmp/late.log"; fails=$((fails + 1))
    fi
    # Again the same day: the archive of the day exists (the run fails for
    # it), and nothing is re-exported.
    code=0
    run_late "$tmp/late-archive" "$tmp/late2.log" || code=$?
    if [ "$code" = 1 ] && [ "$(late_objects "$tmp/late-archive")" = "$objs" ] \
       && ! grep -q "late tenant=" "$tmp/late2.log" && [ "$(markers)" = "$d2 t2 1;" ]; then
      echo "ok   a second run re-exports nothing"
    else
      echo "FAIL second run: exit $code, objects: $(late_objects "$tmp/late-archive")"; cat "$tmp/late2.log"; fails=$((fails + 1))
    fi
    # A re-export that cannot be uploaded (a file where its directory goes):
    # the job fails, the day is still exported, and the marker stays.
    python3 - "$tmp/late.ndjson" "$tmp/late3.ndjson" <<'PY'
import json, sys, uuid
early = [json.loads(l) for l in open(sys.argv[1]) if '"early.txt"' in l][0]
early.update(event_id=str(uuid.uuid4()), seq=99, path="early-2.txt")
open(sys.argv[2], "w").write(json.dumps(early) + "\n")
PY
    mkdir -p "$tmp/late-blocked"; : >"$tmp/late-blocked/$d5"
    code=0
    if post_late "$tmp/late3.ndjson"; then
      run_late "$tmp/late-blocked" "$tmp/late3.log" || code=$?
    fi
    if [ "$code" = 1 ] && [ -f "$tmp/late-blocked/$d3/t1.ndjson.gz" ] \
       && [ "$(markers)" = "$d5 t1 1;$d2 t2 1;" ] && grep -q "late tenant=t1 day=$d5 FAILED" "$tmp/late3.log"; then
      echo "ok   a failed re-export fails the job, keeps its marker, and the day is still exported"
    else
      echo "FAIL failed re-export: exit $code, markers: $(markers)"; cat "$tmp/late3.log"; fails=$((fails + 1))
    fi
  fi
fi
[ "$fails" = 0 ]
