#!/usr/bin/env bash
# Exports one UTC day of audit records, one gzip NDJSON file per tenant, and
# copies each file to EXPORT_DEST. Entry point of the fdb-sink "export" image,
# run daily by the audit-export CronJob (deploy/k8s/base/app/cronjob-export.yaml).
#
# Environment:
#   EXPORT_TENANTS  `all` (every tenant with records, from `fdb-sink tenants`), or
#                   tenants separated by commas or spaces (required). With a list,
#                   the job also fails if the store holds tenants the list leaves
#                   out, because retention removes their records unarchived.
#   EXPORT_DEST     gs://bucket/prefix (uploaded with `gcloud storage cp`) or
#                   file:///dir (copied; for local runs) (required)
#   EXPORT_STORE    fdb-sink --store value (default: fdb)
#   EXPORT_DAY      day to export, YYYY-MM-DD (default: yesterday, UTC)
#   EXPORT_WORKDIR  scratch directory (default: a new temporary directory)
#   FDB_SINK        fdb-sink binary (default: fdb-sink on PATH)
#
# Objects land at <EXPORT_DEST>/<day>/<tenant>.ndjson.gz, and the lines the sink
# refused that day (dead letters, which belong to no tenant, selected by the day
# they were received) at <EXPORT_DEST>/dead-letters/<day>.ndjson.gz. An existing object
# is never overwritten: a rerun of a finished day fails instead of silently
# replacing an archive. Exit status is non-zero if any tenant failed; the
# other tenants (and the dead letters) are still exported.
set -euo pipefail

die() { echo "export-audit: $*" >&2; exit 2; }

tenants="${EXPORT_TENANTS:-}"
dest="${EXPORT_DEST:-}"
store="${EXPORT_STORE:-fdb}"
sink="${FDB_SINK:-fdb-sink}"
[ -n "${tenants//[[:space:],]/}" ] || die "EXPORT_TENANTS is empty: name at least one tenant"
[ -n "$dest" ] || die "EXPORT_DEST is empty: gs://bucket/prefix or file:///dir"
case "$dest" in gs://*|file:///*) ;; *) die "EXPORT_DEST must start with gs:// or file:///, got: $dest" ;; esac

day="${EXPORT_DAY:-$(date -u -d yesterday +%F)}"
date -u -d "$day" +%F >/dev/null 2>&1 || die "EXPORT_DAY is not a date (YYYY-MM-DD): $day"
since="${day}T00:00:00Z"
until="$(date -u -d "$day + 1 day" +%F)T00:00:00Z"
work="${EXPORT_WORKDIR:-$(mktemp -d)}"
mkdir -p "$work"

copy() { # src dst-url
  case "$2" in
    # Only if no object is there (generation 0): Cloud Storage answers 412
    # and gcloud fails. (--no-clobber would skip the copy and succeed.)
    gs://*) gcloud storage cp --if-generation-match=0 "$1" "$2" ;;
    file://*)
      local path="${2#file://}"
      mkdir -p "$(dirname "$path")"
      [ ! -e "$path" ] || { echo "export-audit: $path exists, not overwriting" >&2; return 1; }
      cp "$1" "$path" ;;
  esac
}

# Every tenant in the store; the job fails if they cannot be listed.
stored=$("$sink" tenants --store "$store") || { echo "export-audit: cannot list the tenants of $store" >&2; exit 1; }
if [ "${tenants//[[:space:]]/}" = all ]; then
  tenants=$stored
fi

failed=0
for tenant in ${tenants//,/ }; do
  out="$work/$tenant-$day.ndjson.gz"
  echo "export-audit: tenant=$tenant day=$day since=$since until=$until" >&2
  # A .gz output name makes fdb-sink gzip the NDJSON itself.
  if "$sink" export --store "$store" --tenant "$tenant" --since "$since" --until "$until" --output "$out" \
     && copy "$out" "${dest%/}/$day/$tenant.ndjson.gz"; then
    records=$(gzip -dc "$out" | grep -c '^{"schema":"file-event/1"' || true)
    echo "export-audit: tenant=$tenant records=$records -> ${dest%/}/$day/$tenant.ndjson.gz" >&2
  else
    echo "export-audit: tenant=$tenant FAILED" >&2
    failed=1
  fi
  rm -f "$out"
done

# The dead letters received that day: retention removes them like records.
out="$work/dead-letters-$day.ndjson.gz"
echo "export-audit: dead letters received since=$since until=$until" >&2
if "$sink" export --store "$store" --dead-letters --since "$since" --until "$until" --output "$out" \
   && copy "$out" "${dest%/}/dead-letters/$day.ndjson.gz"; then
  echo "export-audit: dead_letters=$(gzip -dc "$out" | wc -l) -> ${dest%/}/dead-letters/$day.ndjson.gz" >&2
else
  echo "export-audit: dead letters FAILED" >&2
  failed=1
fi
rm -f "$out"

# Tenants with records that the list left out: retention will remove their
# records without an archive.
listed=" ${tenants//,/ } "
left_out=()
for tenant in $stored; do
  case "$listed" in *[[:space:]]"$tenant"[[:space:]]*) ;; *) left_out+=("$tenant") ;; esac
done
if [ "${#left_out[@]}" -gt 0 ]; then
  echo "export-audit: FAILED: tenants with records not in EXPORT_TENANTS (not archived): ${left_out[*]}; list them or set EXPORT_TENANTS=all" >&2
  failed=1
fi
exit "$failed"
