#!/usr/bin/env python3
"""Proves the checkers can fail: applies known defects to a rendered overlay,
the dashboard and the compose file, and asserts that check_manifests.py,
check_observability.py and check_compose.py report each one (and pass on the
unmodified input).

    selftest.py RENDERED.yaml RULES.yaml DASHBOARD.json
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import check_binaries  # noqa: E402


def find(objs, kind, name=None):
    for o in objs:
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name):
            return o
    raise KeyError(f"{kind}/{name}")


def containers(o):
    spec = o["spec"]
    tmpl = spec["jobTemplate"]["spec"]["template"] if o["kind"] == "CronJob" else spec["template"]
    return {c["name"]: c for c in tmpl["spec"]["containers"]}


# (description, mutation, text the failure must contain)
MANIFEST_DEFECTS = [
    ("unknown field in a Deployment container",
     lambda objs: containers(find(objs, "Deployment", "audit-api"))["fdb-sink"].update(imagePullPolicyy="Always"),
     "'imagePullPolicyy' was unexpected"),
    ("wrong type in a Service port",
     lambda objs: find(objs, "Service", "audit-api")["spec"]["ports"][0].update(port="8081"),
     "is not of type"),
    ("misspelt FoundationDBCluster field",
     lambda objs: find(objs, "FoundationDBCluster")["spec"].update(processCount={"storage": 3}),
     "'processCount' was unexpected"),
    ("bad field inside the FoundationDB pod template",
     lambda objs: find(objs, "FoundationDBCluster")["spec"]["processes"]["general"]["podTemplate"]["spec"]["containers"][0].update(resourcess={}),
     "'resourcess' was unexpected"),
    ("invalid backup state",
     lambda objs: find(objs, "FoundationDBBackup")["spec"].update(backupState="Run"),
     "'Run' is not one of"),
    ("misspelt PodMonitor endpoint field",
     lambda objs: find(objs, "PodMonitor", "file-monitor")["spec"]["podMetricsEndpoints"][0].update(intervall="30s"),
     "'intervall' was unexpected"),
    ("alert rule with a bad duration",
     lambda objs: find(objs, "PrometheusRule")["spec"]["groups"][0]["rules"][0].update({"for": "5 minutes"}),
     "does not match"),
    ("unknown kind",
     lambda objs: objs.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
     "no schema for example.com/v1 Widget"),
    ("capabilities not dropped",
     lambda objs: containers(find(objs, "CronJob", "audit-retention"))["retention"]["securityContext"]["capabilities"].update(drop=[]),
     "capabilities must drop ALL"),
    ("privilege escalation allowed",
     lambda objs: containers(find(objs, "Deployment", "audit-api"))["fdb-sink"]["securityContext"].update(allowPrivilegeEscalation=True),
     "allowPrivilegeEscalation must be false"),
    ("writable root filesystem",
     lambda objs: containers(find(objs, "StatefulSet"))["file-monitor"]["securityContext"].update(readOnlyRootFilesystem=False),
     "readOnlyRootFilesystem must be true"),
    ("root outside the documented exception",
     lambda objs: containers(find(objs, "DaemonSet", "vector"))["fdb-sink"]["securityContext"].update(runAsNonRoot=False),
     "runAsNonRoot must be true"),
    ("new hostPath volume",
     lambda objs: find(objs, "DaemonSet", "vector")["spec"]["template"]["spec"]["volumes"].append({"name": "etc", "hostPath": {"path": "/etc"}}),
     "is not a documented exception"),
    ("host log mount made writable",
     lambda objs: [m.pop("readOnly") for m in containers(find(objs, "DaemonSet", "vector"))["vector"]["volumeMounts"] if m["name"] == "var-log-pods"],
     "must be mounted readOnly"),
    ("sidecar limits changed",
     lambda objs: containers(find(objs, "StatefulSet"))["file-monitor"]["resources"]["limits"].update(memory="1Gi"),
     "resources must be"),
    ("workspace mounted read-write in the sidecar",
     lambda objs: [m.update(readOnly=False) for m in containers(find(objs, "StatefulSet"))["file-monitor"]["volumeMounts"] if m["mountPath"] == "/workspace"],
     "/workspace must be mounted readOnly"),
    ("attribution not from the downward API",
     lambda objs: [e.pop("valueFrom") and e.update(value="u1") for e in containers(find(objs, "StatefulSet"))["file-monitor"]["env"] if e["name"] == "USER_ID"],
     "USER_ID must come from the pod label"),
    ("workspace pods in a namespace Vector does not read",
     lambda objs: find(objs, "StatefulSet")["metadata"].update(namespace="elsewhere"),
     "reads namespace coditect-app"),
    ("Vector's data_dir not on the hostPath",
     lambda objs: [m.update(mountPath="/var/lib/other") for m in containers(find(objs, "DaemonSet", "vector"))["vector"]["volumeMounts"] if m["name"] == "data"],
     "is not a hostPath mount"),
    ("node-local sink on another port than Vector posts to",
     lambda objs: containers(find(objs, "DaemonSet", "vector"))["fdb-sink"].update(args=["serve", "--store=fdb", "--listen=127.0.0.1:8090"]),
     "but fdb-sink listens on"),
    ("every pod of the namespace admitted to FoundationDB",
     lambda objs: find(objs, "NetworkPolicy", "foundationdb")["spec"]["ingress"][1]["from"][0].update(podSelector={}),
     "(a user workspace) may connect to FoundationDB's client ports"),
    ("workspace pods labelled as FoundationDB clients",
     lambda objs: find(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"].update({"coditect.ai/fdb-client": "true"}),
     "(a user workspace) may connect to FoundationDB's client ports"),
    ("a client-port rule open to every source",
     lambda objs: find(objs, "NetworkPolicy", "foundationdb")["spec"]["ingress"].append({"ports": [{"protocol": "TCP", "port": 4500}]}),
     "(a user workspace) may connect to FoundationDB's client ports"),
    ("the policy's own namespace admitted by namespaceSelector",
     lambda objs: find(objs, "NetworkPolicy", "foundationdb")["spec"]["ingress"].append(
         {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "coditect-app"}}}],
          "ports": [{"protocol": "TCP", "port": 4000, "endPort": 5000}]}),
     "(a user workspace) may connect to FoundationDB's client ports"),
    ("the policy's own namespace admitted by another of its labels",
     lambda objs: find(objs, "NetworkPolicy", "foundationdb")["spec"]["ingress"].append(
         {"from": [{"namespaceSelector": {"matchLabels": {"app.kubernetes.io/part-of": "coditect-audit"}}}],
          "ports": [{"protocol": "TCP", "port": 4500}]}),
     "(a user workspace) may connect to FoundationDB's client ports"),
    ("a second policy that opens the database to the namespace",
     lambda objs: objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                               "metadata": {"name": "allow-all-in-app", "namespace": "coditect-app"},
                               "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                                        "ingress": [{"from": [{"podSelector": {}}]}]}}),
     "(a user workspace) may connect to FoundationDB's client ports"),
    ("an ipBlock on the client ports",
     lambda objs: find(objs, "NetworkPolicy", "foundationdb")["spec"]["ingress"].append(
         {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"protocol": "TCP", "port": 4501}]}),
     "an ipBlock peer on FoundationDB's client ports"),
    ("backup agents without the client label",
     lambda objs: find(objs, "FoundationDBBackup")["spec"]["podTemplateSpec"].pop("metadata"),
     "backup agents (labels {}) cannot reach FoundationDB"),
    ("runbook anchor that does not exist",
     lambda objs: find(objs, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["annotations"].update(
         runbook_url="https://git.example.com/audit/blob/main/docs/operations.md#no-such-section"),
     "has no heading in docs/operations.md"),
    ("relative runbook link",
     lambda objs: find(objs, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["annotations"].update(
         runbook_url="docs/operations.md#filemonitordown"),
     "must be an absolute http(s) URL"),
]

DASHBOARD_DEFECTS = [
    ("panel without a query", lambda d: d["panels"][1].update(targets=[]), "at least one target"),
    ("panel with an empty expr", lambda d: d["panels"][1]["targets"][0].update(expr=" "), "at least one target"),
    ("unbalanced PromQL", lambda d: d["panels"][1]["targets"][0].update(expr="sum(rate(fdb_sink_events_written_total[5m])"), "unbalanced"),
    ("metric name that no binary exports", lambda d: d["panels"][1]["targets"][0].update(expr="sum(fdb_sink_events_writen_total)"), "is not an exported metric name"),
    ("duplicate panel id", lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "duplicate panel id"),
    ("buffer fraction against a fixed size",
     lambda d: [t.update(expr=re.sub(r"/ max by \(node\) \(vector_buffer_max_size_bytes[^)]*\)", "/ 10737418240", t["expr"]))
                for p in d["panels"] for t in p.get("targets", [])],
     "must divide by vector_buffer_max_size_bytes"),
    ("deprecated Vector buffer gauge",
     lambda d: [t.update(expr=t["expr"].replace("vector_buffer_size_bytes", "vector_buffer_byte_size"))
                for p in d["panels"] for t in p.get("targets", [])],
     "uses the deprecated vector_buffer_byte_size"),
]


COMPOSE_DEFECTS = [
    ("FoundationDB version drift", lambda c: c["services"]["foundationdb"].update(image="foundationdb/foundationdb:7.3.70"),
     "FoundationDB versions differ"),
    ("unpinned image", lambda c: c["services"]["volume-owners"].update(image="busybox:latest"), "must be pinned"),
    ("Vector tails another file", lambda c: c["services"]["vector"]["environment"].update(FILE_MONITOR_OUTPUT="/tmp/x"),
     "FILE_MONITOR_OUTPUT must be"),
    ("undeclared volume", lambda c: c["services"]["vector"]["volumes"].append("nope:/nope"), "volume nope is not declared"),
    ("missing Dockerfile", lambda c: c["services"]["fdb-sink"]["build"].update(dockerfile="deploy/docker/missing.Dockerfile"),
     "does not exist"),
]


BINARY_DEFECTS = [
    ("sidecar flag value the monitor rejects",
     lambda objs: containers(find(objs, "StatefulSet"))["file-monitor"].update(
         args=[a.replace("--checksum=sha256", "--checksum=md5") for a in containers(find(objs, "StatefulSet"))["file-monitor"]["args"]]),
     "FAIL StatefulSet/user-workspace container file-monitor"),
    ("probe on a path the sink does not serve",
     lambda objs: containers(find(objs, "Deployment", "audit-api"))["fdb-sink"].update(
         args=["serve", "--store=fdb", "--listen=0.0.0.0:8080"],
         readinessProbe={"httpGet": {"path": "/ready", "port": "metrics"}}),
     "FAIL Deployment/audit-api container fdb-sink: readinessProbe /ready answered 404"),
]


def run(cmd: list[str]) -> tuple[int, str]:
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def main() -> int:
    rendered, rules, dashboard = map(Path, sys.argv[1:4])
    objs = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    dash = json.loads(dashboard.read_text())
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        code, out = run([sys.executable, str(TOOLS / "check_manifests.py"), str(rendered)])
        if code != 0:
            print(f"selftest: FAIL the unmodified manifests do not pass:\n{out}")
            failures += 1
        for desc, mutate, expect in MANIFEST_DEFECTS:
            bad = copy.deepcopy(objs)
            mutate(bad)
            path = tmp_path / "bad.yaml"
            path.write_text(yaml.safe_dump_all(bad))
            code, out = run([sys.executable, str(TOOLS / "check_manifests.py"), str(path)])
            if code == 0 or expect not in out:
                print(f"selftest: FAIL check_manifests missed: {desc} (expected {expect!r})\n{out}")
                failures += 1
        for desc, mutate, expect in DASHBOARD_DEFECTS:
            bad = copy.deepcopy(dash)
            mutate(bad)
            path = tmp_path / "bad.json"
            path.write_text(json.dumps(bad))
            code, out = run([sys.executable, str(TOOLS / "check_observability.py"), str(rules), str(path)])
            if code == 0 or expect not in out:
                print(f"selftest: FAIL check_observability missed: {desc} (expected {expect!r})\n{out}")
                failures += 1
        compose_file = TOOLS.parent / "docker-compose.yml"
        compose = yaml.safe_load(compose_file.read_text())
        base = ["--relative-to", str(TOOLS.parent)]
        code, out = run([sys.executable, str(TOOLS / "check_compose.py"), "--compose", str(compose_file)] + base)
        if code != 0:
            print(f"selftest: FAIL the unmodified compose file does not pass:\n{out}")
            failures += 1
        for desc, mutate, expect in COMPOSE_DEFECTS:
            bad = copy.deepcopy(compose)
            mutate(bad)
            path = tmp_path / "compose.yml"
            path.write_text(yaml.safe_dump(bad))
            code, out = run([sys.executable, str(TOOLS / "check_compose.py"), "--compose", str(path)] + base)
            if code == 0 or expect not in out:
                print(f"selftest: FAIL check_compose missed: {desc} (expected {expect!r})\n{out}")
                failures += 1
        # With built binaries: manifests the binaries would reject must fail.
        binaries_ran = 0
        if all(check_binaries.binary(b) for b in ("file-monitor", "fdb-sink")):
            for desc, mutate, expect in BINARY_DEFECTS:
                bad = copy.deepcopy(objs)
                mutate(bad)
                path = tmp_path / "bad.yaml"
                path.write_text(yaml.safe_dump_all(bad))
                code, out = run([sys.executable, str(TOOLS / "check_binaries.py"), str(path)])
                binaries_ran += 1
                if code != 1 or expect not in out:
                    print(f"selftest: FAIL check_binaries missed: {desc} (expected {expect!r})\n{out}")
                    failures += 1
        else:
            print("selftest: no built binaries; check_binaries defects not planted")
    total = len(MANIFEST_DEFECTS) + len(DASHBOARD_DEFECTS) + len(COMPOSE_DEFECTS) + binaries_ran
    print(f"selftest: {total - failures} of {total} planted defects caught" + ("" if failures else ", unmodified input passes"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
