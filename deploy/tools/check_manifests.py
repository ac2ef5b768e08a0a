#!/usr/bin/env python3
"""Offline checks of rendered Kubernetes manifests (the output of `kubectl kustomize`).

    check_manifests.py [--k8s-version 1.33] RENDERED.yaml...

For every object:
  * built-in kinds: the strict Kubernetes OpenAPI schemas shipped by the
    `kubernetes-validate` package (unknown fields are errors);
  * CRD kinds: the strict JSON schemas vendored in deploy/schemas/ (see its
    README), plus the embedded pod and volume-claim templates of the
    FoundationDB objects against the Kubernetes schemas;
  * a kind with no schema at all is an error, never a silent pass.
Then the project's own rules:
  * every container passes the "restricted" Pod Security Standard, except the
    documented Vector exception (EXCEPTIONS below);
  * the file-monitor sidecar matches the design's Option 2 (resources, read-only
    workspace, attribution from the downward API, metrics port);
  * FoundationDB's client ports admit the pods labelled as its clients,
    the backup agents included, and never a user workspace;
  * every alert has an absolute runbook_url of docs/operations.md whose anchor exists there;
  * the Vector configuration in the collector's ConfigMap fits the manifests:
    its pod selector, namespace and log path glob select the sidecar
    containers, it posts to the port the node-local fdb-sink listens on, its
    data_dir and config directory are where the DaemonSet mounts them, and
    its exporter port is the one the PodMonitor scrapes.
Prints one line per failure and a summary; exits 1 if anything failed.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

DEPLOY = Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent
SCHEMAS = DEPLOY / "schemas"
RUNBOOK = REPO / "docs" / "operations.md"

# CRD kinds and their vendored schema file.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
    ("apps.foundationdb.org/v1beta2", "FoundationDBCluster"): "foundationdbcluster-apps.foundationdb.org-v1beta2.json",
    ("apps.foundationdb.org/v1beta2", "FoundationDBBackup"): "foundationdbbackup-apps.foundationdb.org-v1beta2.json",
}

# Documented exceptions to "restricted" (docs/operations.md#vector-host-access):
# (kind, name, container) -> the rules it may break.
EXCEPTIONS = {
    ("DaemonSet", "vector", "vector"): {"runAsNonRoot"},
}
# Pod-level exceptions: (kind, name) -> hostPath volumes allowed (read-only
# unless listed in the second set).
HOSTPATH_EXCEPTIONS = {
    ("DaemonSet", "vector"): ({"/var/log/pods", "/var/lib/coditect-vector"}, {"/var/lib/coditect-vector"}),
}

POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.checked = 0

    def fail(self, where: str, msg: str) -> None:
        self.failures.append(f"FAIL {where}: {msg}")


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


def k8s_schema_validator(filename: str, version: str) -> jsonschema.Validator:
    """A strict validator for one Kubernetes schema file (e.g. podtemplatespec-v1.json)."""
    schema_dir = f"v{version}.0-local-strict"
    schema = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/{filename}", version)
    defs = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(defs) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check_schema(obj: dict, version: str, report: Report) -> None:
    where = name_of(obj)
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        schema = json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text())
        validator = jsonschema.Draft7Validator(schema)
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in err.absolute_path)
            report.fail(where, f"CRD schema: /{path}: {err.message}")
        check_embedded_templates(obj, version, report)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        report.fail(where, f"no schema for {key[0]} {key[1]}: add one to deploy/schemas/ or fix the apiVersion")
    except kubernetes_validate.ValidationError as e:
        # Only the first error: the validator stops there.
        path = "/".join(str(p) for p in e.absolute_path)
        report.fail(where, f"Kubernetes {version} strict schema: /{path}: {e.message}")


def check_embedded_templates(obj: dict, version: str, report: Report) -> None:
    where = name_of(obj)
    spec = obj.get("spec") or {}
    pod_v = k8s_schema_validator("podtemplatespec-v1.json", version)
    pvc_v = k8s_schema_validator("persistentvolumeclaim-v1.json", version)
    targets: list[tuple[str, jsonschema.Validator, dict]] = []
    if obj["kind"] == "FoundationDBCluster":
        for cls, settings in (spec.get("processes") or {}).items():
            if "podTemplate" in settings:
                targets.append((f"spec/processes/{cls}/podTemplate", pod_v, settings["podTemplate"]))
            if "volumeClaimTemplate" in settings:
                targets.append((f"spec/processes/{cls}/volumeClaimTemplate", pvc_v, settings["volumeClaimTemplate"]))
    if obj["kind"] == "FoundationDBBackup" and "podTemplateSpec" in spec:
        targets.append(("spec/podTemplateSpec", pod_v, spec["podTemplateSpec"]))
    for path, validator, value in targets:
        for err in validator.iter_errors(value):
            sub = "/".join(str(p) for p in err.absolute_path)
            report.fail(where, f"{path}/{sub}: {err.message}")


def pod_template(obj: dict) -> dict | None:
    path = POD_TEMPLATE_PATHS.get(obj.get("kind"))
    if path is None:
        return None
    node = obj
    for p in path:
        node = (node or {}).get(p)
    return node


def check_restricted(obj: dict, report: Report) -> None:
    """The "restricted" Pod Security Standard, plus readOnlyRootFilesystem."""
    tmpl = pod_template(obj)
    if tmpl is None:
        return
    where = name_of(obj)
    kind, name = obj["kind"], obj["metadata"]["name"]
    spec = tmpl.get("spec") or {}
    psc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            report.fail(where, f"{flag} is set")
    allowed_host, writable_host = HOSTPATH_EXCEPTIONS.get((kind, name), (set(), set()))
    host_volumes = {}
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            path = vol["hostPath"]["path"]
            if path not in allowed_host:
                report.fail(where, f"hostPath volume {vol['name']} ({path}) is not a documented exception")
            host_volumes[vol["name"]] = path
    containers = [("initContainer", c) for c in spec.get("initContainers") or []]
    containers += [("container", c) for c in spec.get("containers") or []]
    for role, c in containers:
        cwhere = f"{where} {role} {c['name']}"
        csc = c.get("securityContext") or {}
        allowed = EXCEPTIONS.get((kind, name, c["name"]), set())
        run_as_non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        run_as_user = csc.get("runAsUser", psc.get("runAsUser"))
        if "runAsNonRoot" not in allowed:
            if run_as_non_root is not True:
                report.fail(cwhere, "runAsNonRoot must be true")
            if run_as_user == 0:
                report.fail(cwhere, "runAsUser 0")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            report.fail(cwhere, f"seccompProfile must be RuntimeDefault or Localhost, is {seccomp}")
        if csc.get("allowPrivilegeEscalation") is not False:
            report.fail(cwhere, "allowPrivilegeEscalation must be false")
        if csc.get("privileged"):
            report.fail(cwhere, "privileged")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            report.fail(cwhere, "capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            report.fail(cwhere, f"capabilities added: {caps.get('add')}")
        if csc.get("readOnlyRootFilesystem") is not True:
            report.fail(cwhere, "readOnlyRootFilesystem must be true")
        for m in c.get("volumeMounts") or []:
            path = host_volumes.get(m["name"])
            if path and path not in writable_host and not m.get("readOnly"):
                report.fail(cwhere, f"hostPath {path} must be mounted readOnly")
        if "resources" not in c or "limits" not in c["resources"]:
            report.fail(cwhere, "resources.limits missing")


def find_container(obj: dict, name: str) -> dict | None:
    tmpl = pod_template(obj) or {}
    for c in (tmpl.get("spec") or {}).get("containers") or []:
        if c["name"] == name:
            return c
    return None


def check_sidecar(objs: list[dict], report: Report) -> None:
    """The file-monitor sidecar as the design's Option 2."""
    found = 0
    for obj in objs:
        c = find_container(obj, "file-monitor")
        if c is None:
            continue
        found += 1
        where = f"{name_of(obj)} container file-monitor"
        res = c.get("resources") or {}
        want = {"requests": {"memory": "64Mi", "cpu": "100m"}, "limits": {"memory": "512Mi", "cpu": "500m"}}
        if res != want:
            report.fail(where, f"resources must be {want}, are {res}")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
        if not mounts.get("/workspace", {}).get("readOnly"):
            report.fail(where, "/workspace must be mounted readOnly")
        env = {e["name"]: e for e in c.get("env") or []}
        for var, label in (("USER_ID", "user-id"), ("TENANT_ID", "tenant-id"), ("SESSION_ID", "session-id")):
            path = (((env.get(var) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if path != f"metadata.labels['coditect.ai/{label}']":
                report.fail(where, f"{var} must come from the pod label coditect.ai/{label}, comes from {path}")
        ports = {p.get("containerPort") for p in c.get("ports") or []}
        if 9090 not in ports:
            report.fail(where, "metrics port 9090 missing")
        args = " ".join(c.get("args") or [])
        for needle in ("/workspace", "--metrics-addr=0.0.0.0:9090", "--state-file=/state/index.json", "--checksum=sha256"):
            if needle not in args:
                report.fail(where, f"args lack {needle}")
    if found == 0:
        report.fail("manifests", "no workload has a file-monitor container")


def check_collector(objs: list[dict], report: Report) -> None:
    """vector.toml (as deployed, from the ConfigMap) against the manifests."""
    ds = next((o for o in objs if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "vector"), None)
    if ds is None:
        report.fail("manifests", "no DaemonSet vector")
        return
    where = name_of(ds)
    spec = ds["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    vector = next(c for c in spec["containers"] if c["name"] == "vector")
    mounts = {m["name"]: m["mountPath"] for m in vector.get("volumeMounts", [])}
    cm_name = vols.get("config", {}).get("configMap", {}).get("name")
    cm = next((o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == cm_name), None)
    if cm is None or "vector.toml" not in cm.get("data", {}):
        report.fail(where, f"ConfigMap {cm_name} with vector.toml not found")
        return
    cfg = tomllib.loads(cm["data"]["vector.toml"])
    conf_dir = mounts.get("config")
    args = vector.get("args", [])
    if f"{conf_dir}/vector.toml" not in args:
        report.fail(where, f"vector is not started with --config {conf_dir}/vector.toml: {args}")

    def expand(value: str) -> str:
        env = {e["name"]: e.get("value") for e in vector.get("env", [])}
        return re.sub(r"\$\{([A-Z_]+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or m.group(2) or "", value)

    for tid, t in (cfg.get("transforms") or {}).items():
        if "file" in t:
            path = expand(t["file"])
            if not (path.startswith(f"{conf_dir}/") and path[len(conf_dir) + 1:] in cm["data"]):
                report.fail(where, f"transform {tid} loads {path}, which is not in ConfigMap {cm_name} at {conf_dir}")
    data_vol = next((n for n, v in vols.items() if "hostPath" in v and mounts.get(n) == cfg.get("data_dir")), None)
    if data_vol is None:
        report.fail(where, f"vector.toml data_dir {cfg.get('data_dir')} is not a hostPath mount of the vector container")
    ports = {p["containerPort"] for p in vector.get("ports", [])}
    for sid, sink in (cfg.get("sinks") or {}).items():
        if sink.get("type") == "prometheus_exporter" and int(sink["address"].rsplit(":", 1)[1]) not in ports:
            report.fail(where, f"sink {sid} serves on {sink['address']}, not a declared container port {sorted(ports)}")
        if sink.get("type") == "http":
            m = re.match(r"https?://([^/]+)/", sink.get("uri", ""))
            sink_c = next((c for c in spec["containers"] if c["name"] == "fdb-sink"), {})
            if not m or f"--listen={m.group(1)}" not in sink_c.get("args", []):
                report.fail(where, f"sink {sid} posts to {sink.get('uri')}, but fdb-sink listens on "
                                   f"{[a for a in sink_c.get('args', []) if a.startswith('--listen')]}")

    # The kubernetes_logs source must select the workspace pods' sidecar logs.
    workspaces = [o for o in objs if find_container(o, "file-monitor") is not None]
    for sid, src in (cfg.get("sources") or {}).items():
        if src.get("type") != "kubernetes_logs":
            continue
        for o in workspaces:
            labels = o["spec"]["template"]["metadata"].get("labels", {})
            ns = o["metadata"].get("namespace")
            for pair in filter(None, (src.get("extra_label_selector") or "").split(",")):
                k, _, v = pair.strip().partition("=")
                if labels.get(k) != v:
                    report.fail(where, f"source {sid} selects pods with {k}={v}; {name_of(o)} pods have {k}={labels.get(k)}")
            for pair in filter(None, (src.get("extra_field_selector") or "").split(",")):
                k, _, v = pair.strip().partition("=")
                if k == "metadata.namespace" and v != ns:
                    report.fail(where, f"source {sid} reads namespace {v}; {name_of(o)} is in {ns}")
            sample = f"/var/log/pods/{ns}_{o['metadata']['name']}-0_0123abcd/file-monitor/0.log"
            globs = src.get("include_paths_glob_patterns") or ["**"]
            if not any(fnmatch.fnmatch(sample, g) for g in globs):
                report.fail(where, f"source {sid} globs {globs} do not match the sidecar's log file {sample}")


FDB_CLIENT_PORTS = {4500, 4501}
FDB_CLIENT_LABEL = ("coditect.ai/fdb-client", "true")


def selector_matches(selector: dict, labels: dict) -> bool:
    """matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        k, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": k in labels and labels[k] in values,
              "NotIn": labels.get(k) not in values,
              "Exists": k in labels,
              "DoesNotExist": k not in labels}.get(op, False)
        if not ok:
            return False
    return True


def check_fdb_clients(objs: list[dict], report: Report) -> None:
    """Who may open a connection to FoundationDB, which has no authentication
    of its own here: only pods labelled as its clients, never a workspace
    (whose IDE gets whatever egress the platform allows it). NetworkPolicies
    add up, so every policy that selects the database's pods counts."""
    policy = next((o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "foundationdb"), None)
    if policy is None:
        report.fail("manifests", "no NetworkPolicy foundationdb")
        return
    ns = policy["metadata"].get("namespace")
    where = name_of(policy)
    fdb_pods = (policy["spec"].get("podSelector") or {}).get("matchLabels") or {}
    namespace = next((o for o in objs if o["kind"] == "Namespace" and o["metadata"]["name"] == ns), None)
    ns_labels = dict(((namespace or {}).get("metadata") or {}).get("labels") or {})
    ns_labels["kubernetes.io/metadata.name"] = ns

    def covers_client_port(rule: dict) -> bool:
        if not rule.get("ports"):
            return True  # every port
        for p in rule["ports"]:
            port, end = p.get("port"), p.get("endPort")
            if port is None or isinstance(port, str):
                return True  # every port, or a named one: assume it is
            if any(port <= c <= (end or port) for c in FDB_CLIENT_PORTS):
                return True
        return False

    # Pod selectors that admit pods of the policy's own namespace on a
    # client port, from every policy of that namespace that selects the
    # database's pods.
    peers = []
    for pol in objs:
        if pol["kind"] != "NetworkPolicy" or pol["metadata"].get("namespace") != ns:
            continue
        if "Ingress" not in (pol["spec"].get("policyTypes") or ["Ingress"]):
            continue
        if not selector_matches(pol["spec"].get("podSelector") or {}, fdb_pods):
            continue
        for rule in pol["spec"].get("ingress") or []:
            if not covers_client_port(rule):
                continue
            if "from" not in rule or not rule["from"]:
                peers.append({})  # from everywhere
            for peer in rule.get("from") or []:
                if "ipBlock" in peer:
                    report.fail(name_of(pol), f"an ipBlock peer on FoundationDB's client ports ({peer['ipBlock']}) "
                                              "may admit any pod, workspaces included: select pods by label instead")
                elif "namespaceSelector" in peer:
                    if selector_matches(peer["namespaceSelector"], ns_labels):
                        peers.append(peer.get("podSelector") or {})
                else:
                    peers.append(peer.get("podSelector") or {})
    templates = []
    for o in objs:
        t = pod_template(o)
        if t is None or o["metadata"].get("namespace") != ns:
            continue
        templates.append((name_of(o), (t.get("metadata") or {}).get("labels") or {}, find_container(o, "file-monitor") is not None))
    for o in objs:
        if o["kind"] == "FoundationDBBackup" and o["metadata"].get("namespace") == ns:
            labels = ((o["spec"].get("podTemplateSpec") or {}).get("metadata") or {}).get("labels") or {}
            templates.append((f"{name_of(o)} backup agents", labels, False))
            if not any(selector_matches(sel, labels) for sel in peers):
                report.fail(where, f"{name_of(o)}'s backup agents (labels {labels}) cannot reach FoundationDB")
    k, v = FDB_CLIENT_LABEL
    for name, labels, workspace in templates:
        if not any(selector_matches(sel, labels) for sel in peers):
            continue
        if workspace:
            report.fail(where, f"{name} (a user workspace) may connect to FoundationDB's client ports")
        elif labels.get(k) != v:
            report.fail(where, f"{name} may connect to FoundationDB's client ports without the label {k}={v}")


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) derive from a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def check_runbooks(objs: list[dict], report: Report) -> None:
    if not RUNBOOK.exists():
        report.fail("docs/operations.md", "missing: alerts link their runbooks there")
        return
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", RUNBOOK.read_text(), re.M)}
    for obj in objs:
        if obj.get("kind") != "PrometheusRule":
            continue
        for group in obj["spec"]["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                url = (rule.get("annotations") or {}).get("runbook_url", "")
                where = f"{name_of(obj)} alert {rule['alert']}"
                page, _, anchor = url.partition("#")
                if not re.fullmatch(r"https?://[^/\s]+/\S*docs/operations\.md", page):
                    # Alertmanager and Grafana open the link as it is: a relative one leads nowhere.
                    report.fail(where, f"runbook_url must be an absolute http(s) URL of docs/operations.md "
                                f"(the overlay's audit-runbook url), is {url!r}")
                elif anchor not in anchors:
                    report.fail(where, f"runbook_url anchor #{anchor} has no heading in docs/operations.md")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-version", default="1.33", help="Kubernetes minor version to validate against (default 1.33)")
    ap.add_argument("rendered", nargs="+", type=Path)
    args = ap.parse_args()
    report = Report()
    for path in args.rendered:
        objs = [o for o in yaml.safe_load_all(path.read_text()) if o]
        for obj in objs:
            report.checked += 1
            check_schema(obj, args.k8s_version, report)
            check_restricted(obj, report)
        check_sidecar(objs, report)
        check_runbooks(objs, report)
        check_collector(objs, report)
        check_fdb_clients(objs, report)
    for line in report.failures:
        print(line)
    print(f"check_manifests: {report.checked} objects, {len(report.failures)} failures")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
