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
#
# Records stored after their day was archived: the sink marks each such day and
# tenant in the store (`fdb-sink late` lists the markers, `day tenant count`),
# in the transaction that stores the records. The job reads the markers before
# the day's export. After it, the markers of the exported day are cleared for
# the tenants it exported (it holds their records). For each marker of an
# earlier day, the tenant's whole day is exported again, to
# <EXPORT_DEST>/<day>/<tenant>.late-<UTC time of the run, YYYYMMDDTHHMMSSZ>.ndjson.gz,
# and the marker is cleared once the upload succeeded. A marker is cleared only
# if its count is still the one read before the export (`fdb-sink late --clear
# --if-count`): records stored meanwhile keep it set, and the next run exports
# that day again. A failed re-export fails the job; the other work still
# happens. Markers of later days, and of tenants not in EXPORT_TENANTS, are
# left alone.
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
stamp="$(date -u +%Y%m%dT%H%M%SZ)"

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
# The late markers, read before the day's export: a record stored after this
# read keeps (or sets) its marker for the next run.
markers=()
if listed_markers=$("$sink" late --store "$store"); then
  [ -z "$listed_markers" ] || mapfile -t markers <<<"$listed_markers"
  echo "export-audit: late markers=${#markers[@]}" >&2
else
  echo "export-audit: cannot list the late markers of $store: FAILED (records stored late are re-exported by the next run)" >&2
  failed=1
fi

exported_ok=" "
for tenant in ${tenants//,/ }; do
  out="$work/$tenant-$day.ndjson.gz"
  echo "export-audit: tenant=$tenant day=$day since=$since until=$until" >&2
  # A .gz output name makes fdb-sink gzip the NDJSON itself.
  if "$sink" export --store "$store" --tenant "$tenant" --since "$since" --until "$until" --output "$out" \
     && copy "$out" "${dest%/}/$day/$tenant.ndjson.gz"; then
    records=$(gzip -dc "$out" | grep -c '^{"schema":"file-event/1"' || true)
    echo "export-audit: tenant=$tenant records=$records -> ${dest%/}/$day/$tenant.ndjson.gz" >&2
    exported_ok+="$tenant "
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

# Clears a late marker if its count is still the one read before the exports.
clear_marker() { # day tenant count
  local code=0
  "$sink" late --store "$store" --clear --day "$1" --tenant "$2" --if-count "$3" || code=$?
  case "$code" in
    0) echo "export-audit: late day=$1 tenant=$2 count=$3 marker cleared" >&2 ;;
    3) echo "export-audit: late day=$1 tenant=$2: records stored since the markers were read; marker kept, the next run exports the day again" >&2 ;;
    *) echo "export-audit: late day=$1 tenant=$2 clearing the marker FAILED" >&2; failed=1 ;;
  esac
}

listed=" ${tenants//,/ } "
for marker in ${markers[@]+"${markers[@]}"}; do
  read -r mday mtenant mcount <<<"$marker"
  case "$listed" in
    *[[:space:]]"$mtenant"[[:space:]]*) ;;
    *) echo "export-audit: late day=$mday tenant=$mtenant count=$mcount: tenant not in EXPORT_TENANTS, left" >&2; continue ;;
  esac
  if [ "$mday" = "$day" ]; then
    # The day's export above read the store after the markers: it holds them.
    case "$exported_ok" in
      *" $mtenant "*) clear_marker "$mday" "$mtenant" "$mcount" ;;
      *) echo "export-audit: late day=$mday tenant=$mtenant count=$mcount: the day's export failed, marker kept" >&2 ;;
    esac
  elif [[ "$mday" < "$day" ]]; then
    obj="${dest%/}/$mday/$mtenant.late-$stamp.ndjson.gz"
    out="$work/$mtenant-$mday.late.ndjson.gz"
    if ! muntil="$(date -u -d "$mday + 1 day" +%F)T00:00:00Z"; then
      echo "export-audit: late day=$mday tenant=$mtenant: not a day, FAILED" >&2
      failed=1
      continue
    fi
    echo "export-audit: late tenant=$mtenant day=$mday count=$mcount since=${mday}T00:00:00Z until=$muntil" >&2
    if "$sink" export --store "$store" --tenant "$mtenant" --since "${mday}T00:00:00Z" --until "$muntil" --output "$out" \
       && copy "$out" "$obj"; then
      records=$(gzip -dc "$out" | grep -c '^{"schema":"file-event/1"' || true)
      echo "export-audit: late tenant=$mtenant day=$mday records=$records -> $obj" >&2
      clear_marker "$mday" "$mtenant" "$mcount"
    else
      echo "export-audit: late tenant=$mtenant day=$mday FAILED (marker kept)" >&2
      failed=1
    fi
    rm -f "$out"
  else
    echo "export-audit: late day=$mday tenant=$mtenant count=$mcount: after $day, left" >&2
  fi
done

# Tenants with records that the list left out: retention will remove their
# records without an archive.
left_out=()
for tenant in $stored; do
  case "$listed" in *[[:space:]]"$tenant"[[:space:]]*) ;; *) left_out+=("$tenant") ;; esac
done
if [ "${#left_out[@]}" -gt 0 ]; then
  echo "export-audit: FAILED: tenants with records not in EXPORT_TENANTS (not archived): ${left_out[*]}; list them or set EXPORT_TENANTS=all" >&2
  failed=1
fi
exit "$failed"
