#!/usr/bin/env python3
"""Static checks of deploy/docker-compose.yml and of version pins shared by
several files (no Docker engine needed).

    check_compose.py [--compose FILE --relative-to DIR]

  * every service has a pinned image tag (never latest) or a build whose
    Dockerfile exists;
  * named volumes are declared, relative bind sources exist;
  * Vector runs a config that exists in vector-config/, reads the file the
    monitor writes, and is the pinned 0.56.0 image;
  * one FoundationDB version everywhere: the fdb-sink Dockerfile's client
    (FDB_VERSION), the FoundationDBCluster and FoundationDBBackup, and the
    compose FoundationDB image.
Prints one line per failure and a summary; exits 1 if anything failed.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1]
REPO = DEPLOY.parent
VECTOR_IMAGE = "timberio/vector:0.56.0-distroless-libc"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compose", type=Path, default=DEPLOY / "docker-compose.yml", help="compose file to check")
    ap.add_argument("--relative-to", type=Path, default=DEPLOY, help="directory relative paths resolve from")
    args = ap.parse_args()
    failures: list[str] = []
    base = args.relative_to
    compose = yaml.safe_load(args.compose.read_text())
    declared = set((compose.get("volumes") or {}).keys())
    services = compose["services"]
    for name, svc in services.items():
        where = f"docker-compose.yml service {name}"
        build = svc.get("build")
        if build:
            dockerfile = (base / build["context"] / build["dockerfile"]).resolve()
            if not dockerfile.exists():
                failures.append(f"FAIL {where}: Dockerfile {dockerfile} does not exist")
        elif ":" not in svc.get("image", "") or svc["image"].endswith(":latest"):
            failures.append(f"FAIL {where}: image must be pinned to a version tag, is {svc.get('image')!r}")
        for vol in svc.get("volumes") or []:
            source = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", vol).split(":", 1)[0]
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    failures.append(f"FAIL {where}: bind source {source} does not exist")
            elif source not in declared:
                failures.append(f"FAIL {where}: volume {source} is not declared under volumes:")
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                failures.append(f"FAIL {where}: depends on unknown service {dep}")

    vector = services.get("vector", {})
    if vector.get("image") != VECTOR_IMAGE:
        failures.append(f"FAIL docker-compose.yml: vector image must be {VECTOR_IMAGE}")
    cmd = vector.get("command") or []
    configs = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--config"]
    for c in configs:
        if not (REPO / "vector-config" / Path(c).name).exists():
            failures.append(f"FAIL docker-compose.yml: vector config {c} is not in vector-config/")
    monitor_out = next((a.split("=", 1)[1] for a in services.get("file-monitor", {}).get("command", [])
                        if a.startswith("--output=")), None)
    if vector.get("environment", {}).get("FILE_MONITOR_OUTPUT") != monitor_out:
        failures.append("FAIL docker-compose.yml: vector's FILE_MONITOR_OUTPUT must be the file-monitor's --output")

    # One FoundationDB version everywhere.
    versions: dict[str, str] = {}
    m = re.search(r"^ARG FDB_VERSION=(\S+)", (DEPLOY / "docker" / "fdb-sink.Dockerfile").read_text(), re.M)
    versions["fdb-sink.Dockerfile FDB_VERSION"] = m.group(1) if m else "?"
    for f in ("foundationdb-cluster.yaml", "foundationdb-backup.yaml"):
        obj = yaml.safe_load((DEPLOY / "k8s" / "base" / "app" / f).read_text())
        versions[f"{f} spec.version"] = obj["spec"]["version"]
    fdb_image = services.get("foundationdb", {}).get("image", "")
    versions["docker-compose.yml foundationdb image"] = fdb_image.rsplit(":", 1)[-1]
    if len(set(versions.values())) != 1:
        failures.append("FAIL FoundationDB versions differ: " + ", ".join(f"{k}={v}" for k, v in versions.items()))

    for line in failures:
        print(line)
    print(f"check_compose: {len(services)} services, FoundationDB {'/'.join(sorted(set(versions.values())))}, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
