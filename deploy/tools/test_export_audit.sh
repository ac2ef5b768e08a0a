#!/usr/bin/env bash
# Tests deploy/docker/export-audit.sh, the daily export job's entry point:
#  - bad configuration fails fast with exit 2 and a message naming the variable;
#  - with a built fdb-sink (target/{debug,release}/fdb-sink), a real export
#    from an embedded store: only the asked tenant and day, gzip NDJSON, at
#    <dest>/<day>/<tenant>.ndjson.gz, for every tenant (EXPORT_TENANTS=all) or
#    the listed ones (failing when the list leaves a tenant with records out),
#    the day's dead letters at <dest>/dead-letters/<day>.ndjson.gz, and a
#    rerun refuses to overwrite it.
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
for candidate in target/release/fdb-sink target/debug/fdb-sink; do
  if [ -x "$candidate" ] && "$candidate" tenants --help >/dev/null 2>&1; then sink=$candidate; break; fi
done
if [ -z "$sink" ]; then
  echo "skip real export: no built fdb-sink with the tenants command (cargo build -p fdb-sink)"
else
  store="embedded:$tmp/store"
  # Two tenants, two days: only t1 on 2026-11-25 must come out.
  python3 - "$tmp/events.ndjson" <<'PY'
import json, sys, uuid
mon = str(uuid.uuid4())
lines = []
for seq, (tenant, day, path) in enumerate([
        ("t1", "2026-11-25", "a.txt"), ("t1", "2026-11-25", "b.txt"),
        ("t2", "2026-11-25", "c.txt"), ("t1", "2026-11-26", "d.txt")], start=1):
    lines.append(json.dumps({
        "schema": "file-event/1", "event_id": str(uuid.uuid4()), "monitor_id": mon, "seq": seq,
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
fi
[ "$fails" = 0 ]
