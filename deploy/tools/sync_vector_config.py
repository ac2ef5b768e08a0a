#!/usr/bin/env python3
"""Copies the Vector DaemonSet configuration from vector-config/ into the
collector kustomization, where the `vector` configMapGenerator picks it up.

    sync_vector_config.py          copy, and rewrite the generator's file list
    sync_vector_config.py --check  exit 1 if the copy differs from vector-config/

Copied: every *.toml except the ones for running outside Kubernetes (*local*),
and every *.vrl (the remap programs the TOML loads with `file =`). kustomize
refuses files outside the kustomization directory and `kubectl apply -k` has
no flag to lift that, hence a checked-in copy plus this check in CI.
ConfigMap keys cannot contain "/", so vector-config/ must keep these files at
its top level; the DaemonSet mounts them at /etc/vector/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "vector-config"
DEST = REPO / "deploy" / "k8s" / "base" / "collector" / "vector-config"
KUSTOMIZATION = DEST.parent / "kustomization.yaml"
BEGIN = "    # BEGIN vector-config files (deploy/tools/sync_vector_config.py)\n"
END = "      # END vector-config files\n"


def wanted() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if not SRC.is_dir():
        return files
    for path in sorted(SRC.rglob("*")):
        if not path.is_file() or path.suffix not in (".toml", ".vrl"):
            continue
        rel = path.relative_to(SRC)
        if path.suffix == ".toml" and "local" in path.name:
            continue
        if "tests" in rel.parts[:-1] or path.name.startswith("test"):
            continue
        if len(rel.parts) != 1:
            sys.exit(f"sync_vector_config: {rel}: only top-level files can become ConfigMap keys")
        files[path.name] = path.read_bytes()
    return files


# Files of the collector kustomization itself that join the ConfigMap.
OWN_FILES: list[str] = []


def generator_block(names: list[str]) -> str:
    lines = [BEGIN, "    files:\n"]
    lines += [f"      - vector-config/{n}\n" for n in names]
    lines += [f"      - {n}\n" for n in OWN_FILES]
    return "".join(lines) + END


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = ap.parse_args()
    files = wanted()
    current = {p.name: p.read_bytes() for p in DEST.glob("*") if p.is_file()} if DEST.is_dir() else {}
    text = KUSTOMIZATION.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"sync_vector_config: markers missing in {KUSTOMIZATION}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new_text = head + generator_block(sorted(files)) + tail
    if args.check:
        stale = sorted(set(files) ^ set(current)) + sorted(n for n in files if n in current and files[n] != current[n])
        if stale or new_text != text:
            print(f"sync_vector_config: the collector's copy of vector-config/ is stale ({', '.join(stale) or 'file list'});"
                  " run deploy/tools/sync_vector_config.py and commit")
            return 1
        print(f"sync_vector_config: {len(files)} files in sync: {', '.join(sorted(files)) or '(none yet)'}")
        return 0
    DEST.mkdir(parents=True, exist_ok=True)
    for name in set(current) - set(files):
        (DEST / name).unlink()
    for name, data in files.items():
        (DEST / name).write_bytes(data)
    KUSTOMIZATION.write_text(new_text)
    print(f"sync_vector_config: copied {len(files)} files: {', '.join(sorted(files)) or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
