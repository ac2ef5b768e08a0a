#!/usr/bin/env python3
"""Writes the rule groups of every PrometheusRule in rendered manifests as a
plain Prometheus rules file, for `promtool check rules` / `promtool test rules`.

    extract_rules.py RENDERED.yaml OUT.yaml
"""
import sys
from pathlib import Path

import yaml


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    groups = []
    for obj in yaml.safe_load_all(Path(sys.argv[1]).read_text()):
        if obj and obj.get("kind") == "PrometheusRule":
            groups.extend(obj["spec"]["groups"])
    if not groups:
        print(f"extract_rules: no PrometheusRule in {sys.argv[1]}", file=sys.stderr)
        return 1
    Path(sys.argv[2]).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    print(f"extract_rules: {len(groups)} groups, {len(alerts)} alerts -> {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
