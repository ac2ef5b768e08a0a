#!/usr/bin/env python3
"""Checks that the overlays' JSON patches which change an environment variable
by its position (`.../env/<n>/...`) first test that variable's name, so that
a reordered env list in the base fails the render instead of changing another
variable.

    check_overlays.py OVERLAY_DIR_OR_KUSTOMIZATION.yaml...

Prints one line per unguarded operation; exits 1 if there is any.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ENV_ITEM = re.compile(r"^(.*/env/\d+)(/.*)?$")


def unguarded(kustomization: Path) -> list[str]:
    if kustomization.is_dir():
        kustomization = kustomization / "kustomization.yaml"
    doc = yaml.safe_load(kustomization.read_text()) or {}
    found = []
    for i, entry in enumerate(doc.get("patches") or []):
        text = entry.get("patch") if isinstance(entry, dict) else None
        if not text:
            continue
        ops = yaml.safe_load(text)
        if not isinstance(ops, list):
            continue  # a strategic-merge patch names its items, not their positions
        target = entry.get("target") or {}
        tested: set[str] = set()
        for op in ops:
            path = op.get("path", "")
            m = ENV_ITEM.match(path)
            if op.get("op") == "test":
                if m and m.group(2) == "/name":
                    tested.add(m.group(1))
                continue
            if m and m.group(1) not in tested:
                found.append(f"{kustomization}: patches[{i}] ({target.get('kind')}/{target.get('name')}): "
                             f"{op.get('op')} {path} without a preceding "
                             f"`op: test` of {m.group(1)}/name")
    return found


def main() -> int:
    problems = [p for arg in sys.argv[1:] for p in unguarded(Path(arg))]
    for p in problems:
        print(p)
    print(f"check_overlays: {len(sys.argv) - 1} overlays, {len(problems)} unguarded env patches")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
