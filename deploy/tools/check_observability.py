#!/usr/bin/env python3
"""Checks the Grafana dashboards and the alert rules against the metrics the
binaries really export.

    check_observability.py RULES.yaml DASHBOARD.json...

  * each dashboard parses as JSON, has a unique uid, unique panel ids, and every
    panel other than a row has at least one target with a non-empty PromQL expr
    that promtool-free parsing can see is balanced (parentheses, braces, quotes);
  * every project metric (fs_monitor_*, fdb_sink_*) named in a dashboard or a
    rule is one of the fixed names in METRICS below (docs/operations.md and
    the binaries use the same list);
  * where a crate's source already registers metrics, each of those names is
    registered there (so a rename in the code breaks this check, not the
    on-call engineer's alert);
  * the Vector disk-buffer alert and panels read Vector's current buffer
    gauges (vector_buffer_size_bytes over vector_buffer_max_size_bytes, never
    the deprecated names or a hard-coded size), the fdb_sink sink of
    vector-config/vector.toml has the disk buffer with a max_size that makes
    Vector report vector_buffer_max_size_bytes, and that file serves its
    metrics on the port the collector exposes (9598) and keeps data_dir at
    /var/lib/vector (the DaemonSet's hostPath mount).
Prints one line per failure and a summary; exits 1 if anything failed.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

# The fixed metric names (base names: prometheus-client appends _total to
# counters; histograms add _bucket/_sum/_count).
METRICS = {
    "monitor": {
        "fs_monitor_events_published_total", "fs_monitor_events_dropped_total",
        "fs_monitor_events_coalesced_total", "fs_monitor_rescans_total", "fs_monitor_watches",
        "fs_monitor_watch_limit_reached_total", "fs_monitor_polled_subtrees", "fs_monitor_queue_depth",
        "fs_monitor_checksum_bytes_total", "fs_monitor_processing_latency_seconds",
        "fs_monitor_state_save_failures_total", "fs_monitor_state_load_failures_total",
        "fs_monitor_mount_changes_total",
    },
    "fdb-sink": {
        "fdb_sink_events_received_total", "fdb_sink_events_written_total", "fdb_sink_events_duplicate_total", "fdb_sink_events_late_total",
        "fdb_sink_dead_letter_total", "fdb_sink_dead_letter_duplicate_total", "fdb_sink_batches_total", "fdb_sink_commit_latency_seconds",
        "fdb_sink_transaction_retries_total", "fdb_sink_store_errors_total", "fdb_sink_inflight_batches",
        "fdb_sink_http_requests_total", "fdb_sink_delivery_missing_events", "fdb_sink_store_up",
        "fdb_sink_api_requests_total", "fdb_sink_api_streams_open",
    },
}
KNOWN = set().union(*METRICS.values())
METRIC_RE = re.compile(r"\b((?:fs_monitor|fdb_sink)_[a-z0-9_]+)")

# Vector's buffer gauges deprecated in 0.53 (still exported by 0.56, scheduled
# for removal), with their replacements.
DEPRECATED_VECTOR = {
    "vector_buffer_byte_size": "vector_buffer_size_bytes",
    "vector_buffer_events": "vector_buffer_size_events",
    "vector_buffer_max_byte_size": "vector_buffer_max_size_bytes",
    "vector_buffer_max_event_size": "vector_buffer_max_size_events",
}
DEPRECATED_RE = re.compile(r"\b(" + "|".join(DEPRECATED_VECTOR) + r")\b")


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in KNOWN:
            return name[: -len(suffix)]
    return name


def registered_name(name: str) -> str:
    """The string the Rust code registers: without the _total suffix."""
    return name[: -len("_total")] if name.endswith("_total") else name


def balanced(expr: str) -> bool:
    pairs = {")": "(", "}": "{", "]": "["}
    stack: list[str] = []
    in_str = False
    for ch in expr:
        if ch == '"':
            in_str = not in_str
        elif in_str:
            continue
        elif ch in "({[":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and not in_str


def buffer_fraction_problem(expr: str) -> str | None:
    """Why a PromQL expression is not a proper buffer fill fraction, or None."""
    m = DEPRECATED_RE.search(expr)
    if m:
        return f"uses the deprecated {m.group(1)} (use {DEPRECATED_VECTOR[m.group(1)]})"
    if "vector_buffer_size_bytes" not in expr or "/" not in expr:
        return None
    denominator = expr.split("/", 1)[1]
    if re.match(r"\s*[0-9]", denominator) or "vector_buffer_max_size_bytes" not in denominator:
        return "must divide by vector_buffer_max_size_bytes, not a fixed size"
    return None


def dashboard_exprs(path: str) -> list[tuple[str, str]]:
    try:
        dash = json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        return []  # reported by main()
    out, stack = [], list(dash.get("panels", []))
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        for t in panel.get("targets") or []:
            out.append((f"{Path(path).name} panel {panel.get('id')} {panel.get('title')!r}", t.get("expr", "")))
    return out


def check_vector_config(rules: dict, dashboards: list[str]) -> list[str]:
    path = REPO / "vector-config" / "vector.toml"
    if not path.exists():
        return [f"FAIL {path}: missing (the collector runs it)"]
    cfg = tomllib.loads(path.read_text())
    out = []
    buffer = cfg.get("sinks", {}).get("fdb_sink", {}).get("buffer", {})
    if buffer.get("type") != "disk" or not buffer.get("max_size"):
        out.append(f"FAIL {path.name}: sinks.fdb_sink needs a disk buffer with max_size "
                   "(Vector reports vector_buffer_max_size_bytes only for a byte-sized buffer)")
    exprs = [str(r["expr"]) for g in rules["groups"] for r in g["rules"] if r.get("alert") == "VectorBufferFilling"]
    if not exprs:
        out.append("FAIL alert VectorBufferFilling is missing")
    for e in exprs:
        problem = buffer_fraction_problem(e)
        if problem is None and ("vector_buffer_size_bytes" not in e or "/" not in e):
            problem = "must divide vector_buffer_size_bytes by vector_buffer_max_size_bytes"
        if problem:
            out.append(f"FAIL alert VectorBufferFilling {problem}")
    for d in dashboards:
        for where, e in dashboard_exprs(d):
            problem = buffer_fraction_problem(e)
            if problem:
                out.append(f"FAIL {where}: the buffer query {problem}")
    if cfg.get("data_dir") != "/var/lib/vector":
        out.append(f"FAIL {path.name}: data_dir must be /var/lib/vector, the collector's hostPath mount")
    addrs = [s.get("address") for s in cfg.get("sinks", {}).values() if s.get("type") == "prometheus_exporter"]
    if not any(a and a.endswith(":9598") for a in addrs):
        out.append(f"FAIL {path.name}: no prometheus_exporter on :9598, the port the PodMonitor scrapes")
    return out


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    failures: list[str] = []
    used: dict[str, set[str]] = {}

    rules = yaml.safe_load(Path(sys.argv[1]).read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for m in METRIC_RE.findall(str(rule["expr"])):
                used.setdefault(base_name(m), set()).add(f"rule {rule.get('alert', rule.get('record'))}")

    panels_checked = 0
    for path in map(Path, sys.argv[2:]):
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            failures.append(f"FAIL {path}: not JSON: {e}")
            continue
        if not dash.get("uid") or not dash.get("title"):
            failures.append(f"FAIL {path}: dashboard needs a uid and a title")
        ids: set[int] = set()
        stack = list(dash.get("panels", []))
        while stack:
            panel = stack.pop()
            stack.extend(panel.get("panels", []))
            where = f"{path.name} panel {panel.get('id')} {panel.get('title')!r}"
            if panel.get("id") in ids:
                failures.append(f"FAIL {where}: duplicate panel id")
            ids.add(panel.get("id"))
            if panel.get("type") == "row":
                continue
            panels_checked += 1
            targets = panel.get("targets") or []
            exprs = [t.get("expr", "").strip() for t in targets]
            if not exprs or not all(exprs):
                failures.append(f"FAIL {where}: every panel needs at least one target, each with a PromQL expr")
            for expr in exprs:
                if not balanced(expr):
                    failures.append(f"FAIL {where}: unbalanced brackets or quotes in {expr!r}")
                for m in METRIC_RE.findall(expr):
                    used.setdefault(base_name(m), set()).add(where)

    for name, places in sorted(used.items()):
        if name not in KNOWN:
            failures.append(f"FAIL metric {name} (in {', '.join(sorted(places))}) is not an exported metric name")

    # Cross-check with the crates that already register metrics.
    crate_dirs = {"monitor": REPO / "monitor" / "src", "fdb-sink": REPO / "fdb-sink" / "src"}
    for crate, names in METRICS.items():
        src = "\n".join(p.read_text() for p in crate_dirs[crate].rglob("*.rs")) if crate_dirs[crate].exists() else ""
        if "prometheus_client" not in src:
            print(f"check_observability: {crate} registers no metrics yet; name cross-check skipped for it")
            continue
        for name in sorted(names):
            if f'"{registered_name(name)}"' not in src and f'"{name}"' not in src:
                failures.append(f"FAIL metric {name}: not registered in {crate}/src (renamed?)")

    failures += check_vector_config(rules, sys.argv[2:])

    for line in failures:
        print(line)
    print(f"check_observability: {panels_checked} panels, {len(used)} metric names, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
