#!/usr/bin/env python3
"""Runs the real file-monitor and fdb-sink binaries with the arguments the
rendered manifests give their containers, to prove the manifests and the
binaries agree: every flag is accepted, the probe paths answer on the probed
port, the metrics port serves Prometheus text, and data flows.

    check_binaries.py RENDERED.yaml

Uses target/release or target/debug builds ($CARGO_TARGET_DIR when set; cargo test --workspace builds
both binaries; exit code 3 when they are missing). What cannot run here is
swapped, nothing else: `fdb:` stores become `embedded:` stores in a temporary
directory, listen addresses get free 127.0.0.1 ports, container paths become
temporary paths, and $(VAR) references get the values the downward API would
give. A container whose arguments name a subcommand or flag the binary does
not have yet is reported as SKIP with the binary's own error, not as a pass.
Prints one line per container and a summary; exits 1 if anything failed.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LABELS = {"USER_ID": "user-1", "TENANT_ID": "tenant-1", "SESSION_ID": "session-1"}


def target_dir() -> Path:
    """Where cargo builds: $CARGO_TARGET_DIR when set, else target/."""
    env = os.environ.get("CARGO_TARGET_DIR")
    return Path(env).resolve() if env else REPO / "target"


def binary(name: str) -> Path | None:
    for profile in ("release", "debug"):
        p = target_dir() / profile / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return (-1, f"process exited with {proc.returncode}")
        try:
            last = http("GET", url)
            if last[0] == 200:
                return last
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    return last


def pod_containers(objs: list[dict]):
    for o in objs:
        spec = o.get("spec") or {}
        if o["kind"] == "CronJob":
            tmpl = spec["jobTemplate"]["spec"]["template"]
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            tmpl = spec["template"]
        else:
            continue
        for c in tmpl["spec"].get("containers", []):
            yield o, c


def probe(c: dict, kind: str) -> tuple[str, str] | None:
    p = (c.get(kind) or {}).get("httpGet")
    return (p["path"], p["port"]) if p else None


def port_number(c: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c.get("ports", []) if p.get("name") == port)


class Run:
    def __init__(self, argv: list[str], env: dict[str, str], stdout=subprocess.DEVNULL):
        self.proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read() if self.proc.stderr else ""


def usage_error(stderr: str) -> str | None:
    m = re.search(r"error: (unexpected argument '[^']+'|unrecognized subcommand '[^']+')", stderr)
    return m.group(1) if m else None


def substitute(args: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\(([A-Z_]+)\)", lambda m: env.get(m.group(1), ""), a) for a in args]


def check_monitor(where: str, c: dict, exe: Path, tmp: Path) -> tuple[str, str]:
    ws, state = tmp / "workspace", tmp / "state"
    ws.mkdir()
    state.mkdir()
    ports: dict[int, int] = {}
    args = []
    for a in substitute(c.get("args", []), LABELS):
        if a == "/workspace":
            a = str(ws)
        a = a.replace("/state/", f"{state}/")
        m = re.match(r"--metrics-addr=0\.0\.0\.0:(\d+)$", a)
        if m:
            ports[int(m.group(1))] = free_port()
            a = f"--metrics-addr=127.0.0.1:{ports[int(m.group(1))]}"
        args.append(a)
    env = {"PATH": os.environ.get("PATH", ""), **LABELS, "RUST_LOG": "warn"}
    out_path = tmp / "stdout.ndjson"
    with open(out_path, "w") as out:
        run = Run([str(exe), *args], env, stdout=out)
        try:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = probe(c, kind)
                if pr:
                    port = ports.get(port_number(c, pr[1]))
                    if port is None:
                        return "FAIL", f"{kind} port {pr[1]} is not the --metrics-addr port"
                    code, body = wait_http(f"http://127.0.0.1:{port}{pr[0]}", run.proc)
                    if code != 200:
                        return "FAIL", f"{kind} {pr[0]} answered {code}: {body.strip()[:200]} {run.stop()[-500:]}"
            (ws / "hello.txt").write_text("hello\n")
            deadline, event = time.monotonic() + 15, None
            while time.monotonic() < deadline and event is None:
                for line in out_path.read_text().splitlines():
                    ev = json.loads(line)
                    if ev.get("path") == "hello.txt":
                        event = ev
                time.sleep(0.2)
            metrics_port = ports.get(9090)
            _, metrics = http("GET", f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            stderr = run.stop()
    if event is None:
        return "FAIL", f"no event for a file created in the workspace; stderr: {stderr[-500:]}"
    wrong = {k: event.get(k) for k in ("tenant_id", "user_id", "session_id") if event.get(k) != LABELS[k.upper()]}
    if wrong:
        return "FAIL", f"attribution from the pod labels did not reach the event: {wrong}"
    if not event.get("checksum", "").startswith("sha256:"):
        return "FAIL", f"--checksum=sha256 gave checksum {event.get('checksum')!r}"
    if "fs_monitor_events_published_total" not in metrics:
        return "FAIL", "metrics port does not serve fs_monitor_events_published_total"
    return "PASS", (f"args accepted, probes {', '.join(p[0] for k in ('livenessProbe', 'readinessProbe') if (p := probe(c, k)))} "
                    f"answer on the metrics port, event {event['event_type']} hello.txt attributed to "
                    f"{event['tenant_id']}/{event['user_id']}/{event['session_id']} with a sha256 checksum")


def write_secret_file(flag: str, path: Path) -> None:
    """A stand-in for the Secret the manifest mounts: same kind of content."""
    if flag == "jwt-public-key-file":
        key = path.with_suffix(".key")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", str(key)], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(path)],
                       check=True, capture_output=True)
    elif flag == "jwt-secret-file":
        path.write_text(os.urandom(32).hex())
    else:  # bearer tokens
        path.write_text("test-token\n")


def b64url(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def flag_value(c: dict, flag: str) -> str | None:
    """The value a container gives fdb-sink's FLAG: `FLAG=V` or `FLAG V` in
    its args, else the flag's FDB_SINK_* variable in its env."""
    args = c.get("args", [])
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    var = "FDB_SINK_" + flag.removeprefix("--").replace("-", "_").upper()
    return next((e.get("value") for e in c.get("env", []) if e.get("name") == var), None)


def rs256_token(key: Path, claims: dict) -> str:
    """A JWT signed with the private half of the stand-in public key (openssl)."""
    signing_input = f"{b64url(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=signing_input.encode(),
                         capture_output=True, check=True).stdout
    return f"{signing_input}.{b64url(sig)}"


def sink_event(seq: int, timestamp: str = "2026-11-26T18:00:00.000000000Z") -> bytes:
    return json.dumps({
        "schema": "file-event/1", "event_id": f"0190b6a0-0000-7000-8000-{seq:012d}",
        "monitor_id": "0190b6a0-0000-7000-8000-aaaaaaaaaaaa", "seq": seq,
        "timestamp": timestamp, "event_type": "create", "kind": "file",
        "path": f"f{seq}.txt", "tenant_id": "tenant-1", "user_id": "user-1", "session_id": "session-1",
    }).encode()


def check_sink(where: str, c: dict, exe: Path, tmp: Path) -> tuple[str, str]:
    store = f"embedded:{tmp / 'store'}"
    ports: dict[int, int] = {}
    files: list[Path] = []
    args = []
    for a in c.get("args", []):
        a = re.sub(r"^--store=fdb(:\S*)?$", f"--store={store}", a)
        m = re.match(r"--(api-listen|listen)=(0\.0\.0\.0|127\.0\.0\.1):(\d+)$", a)
        if m:
            ports[int(m.group(3))] = free_port()
            a = f"--{m.group(1)}=127.0.0.1:{ports[int(m.group(3))]}"
        m = re.match(r"--([a-z-]+-file)=(/\S+)$", a)
        if m:
            f = tmp / Path(m.group(2)).name
            write_secret_file(m.group(1), f)
            files.append(f)
            a = f"--{m.group(1)}={f}"
        args.append(a)
    env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"}
    api_note = ""
    retention = bool(args) and args[0] == "retention"
    if retention:
        # One record far older than any retention period, one from now.
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        (tmp / "seed.ndjson").write_bytes(sink_event(1, "2020-01-01T00:00:00.000000000Z") + b"\n" + sink_event(2, now) + b"\n")
        subprocess.run([str(exe), "import", "--store", store, str(tmp / "seed.ndjson")], env=env,
                       check=True, capture_output=True)
    if args and args[0] != "serve":
        run = Run([str(exe), *args], env)
        try:
            run.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        stderr = run.stop()
        bad = usage_error(stderr)
        if bad:
            return "SKIP", f"fdb-sink does not implement this yet: {bad}"
        if run.proc.returncode != 0:
            return "FAIL", f"exit {run.proc.returncode}: {stderr.strip()[-400:]}"
        if retention:
            left = subprocess.run([str(exe), "export", "--store", store, "--tenant", "tenant-1"], env=env,
                                  capture_output=True, text=True, check=True).stdout.splitlines()
            # Records only: a tenant export ends with its monitors' counters.
            rows = [json.loads(line) for line in left if line.strip()]
            paths = sorted(r["path"] for r in rows if r.get("schema") == "file-event/1")
            if paths != ["f2.txt"]:
                return "FAIL", f"after `fdb-sink {' '.join(args)}` the store holds {paths}, expected only the recent f2.txt"
            return "PASS", (f"`fdb-sink {' '.join(c.get('args', []))}` (store swapped to embedded) removed the 2020 record "
                            "and kept the recent one")
        return "PASS", f"`fdb-sink {args[0]}` ran with the manifest's arguments (exit 0)"
    run = Run([str(exe), *args], env)
    try:
        time.sleep(0.5)
        if run.proc.poll() is not None:
            stderr = run.stop()
            bad = usage_error(stderr)
            if bad:
                return "SKIP", f"fdb-sink does not implement this yet: {bad}"
            return "FAIL", f"exited {run.proc.returncode}: {stderr.strip()[-400:]}"
        checked = []
        for kind in ("livenessProbe", "readinessProbe"):
            pr = probe(c, kind)
            if pr:
                port = ports.get(port_number(c, pr[1]))
                if port is None:
                    return "FAIL", f"{kind} port {pr[1]} is not a port the arguments make fdb-sink listen on"
                code, body = wait_http(f"http://127.0.0.1:{port}{pr[0]}", run.proc)
                if code != 200:
                    return "FAIL", f"{kind} {pr[0]} answered {code}: {body.strip()[:200]}"
                checked.append(pr[0])
        listen = next((ports[p] for a in c.get("args", []) for p in ports
                       if a.startswith("--listen=") and a.endswith(f":{p}")), None)
        if listen is None:
            return "FAIL", "no --listen in the arguments"
        code, _ = wait_http(f"http://127.0.0.1:{listen}/readyz", run.proc)
        if code != 200:
            return "FAIL", f"/readyz on --listen answered {code}"
        headers = {"Content-Type": "application/x-ndjson"}
        if any(f.name == "token" for f in files):
            headers["Authorization"] = "Bearer test-token"
            code, _ = http("POST", f"http://127.0.0.1:{listen}/v1/events", sink_event(1),
                           {"Content-Type": "application/x-ndjson"})
            if code != 401:
                return "FAIL", f"ingest without the token answered {code}, not 401"
        code, body = http("POST", f"http://127.0.0.1:{listen}/v1/events", sink_event(1) + b"\n" + sink_event(2), headers)
        if code != 200:
            return "FAIL", f"POST /v1/events answered {code}: {body[:200]}"
        _, metrics = http("GET", f"http://127.0.0.1:{listen}/metrics")
        written = re.search(r"^fdb_sink_events_written_total(?:\{[^}]*\})? (\S+)$", metrics, re.M)
        if not written or float(written.group(1)) != 2:
            return "FAIL", f"fdb_sink_events_written_total after 2 events: {written.group(1) if written else 'absent'}"
        api = next((ports[p] for a in c.get("args", []) for p in ports
                    if a.startswith("--api-listen=") and a.endswith(f":{p}")), None)
        if api is not None:
            pub = next((f for f in files if f.suffix == ".pem"), None)
            if pub is None:
                return "FAIL", "--api-listen without a --jwt-public-key-file to test with"
            url = f"http://127.0.0.1:{api}/api/v5/monitors/0190b6a0-0000-7000-8000-aaaaaaaaaaaa/delivery"
            code, _ = http("GET", url)
            if code != 401:
                return "FAIL", f"API without a token answered {code}, not 401"
            claims = {"tenant_id": "tenant-1", "user_id": "ops", "role": "admin", "exp": int(time.time()) + 300}
            # The audience and issuer the manifest requires, as its identity provider writes them.
            for flag, claim in (("--jwt-audience", "aud"), ("--jwt-issuer", "iss")):
                value = flag_value(c, flag)
                if value is not None:
                    claims[claim] = value
            token = rs256_token(pub.with_suffix(".key"), claims)
            code, body = http("GET", url, headers={"Authorization": f"Bearer {token}"})
            if code != 200:
                return "FAIL", f"GET delivery with an RS256 admin token answered {code}: {body[:200]}"
            d = json.loads(body)
            if (d.get("received"), d.get("highest_seq"), d.get("missing")) != (2, 2, 0):
                return "FAIL", f"delivery after events seq 1 and 2: {d}"
            api_note = "; API: 401 without a token, GET /api/v5/monitors/{id}/delivery with an RS256 admin token: received 2, highest_seq 2, missing 0"
    finally:
        run.stop()
    return "PASS", (f"args accepted, probes {', '.join(checked) or '(none: localhost-only listener)'} answer, "
                    f"2 events POSTed to /v1/events{' with the bearer token' if 'Authorization' in headers else ''} "
                    f"are committed (fdb_sink_events_written_total 2){api_note}")


def main() -> int:
    rendered = Path(sys.argv[1])
    exes = {"file-monitor": binary("file-monitor"), "fdb-sink": binary("fdb-sink")}
    if not all(exes.values()):
        missing = [k for k, v in exes.items() if not v]
        print(f"check_binaries: no build of {', '.join(missing)} under {target_dir()} (cargo build -p monitor -p fdb-sink)")
        return 3
    objs = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    results = []
    for o, c in pod_containers(objs):
        image = c.get("image", "")
        name = f"{o['kind']}/{o['metadata']['name']} container {c['name']}"
        with tempfile.TemporaryDirectory() as tmp:
            if "/file-monitor" in image:
                results.append((name, *check_monitor(name, c, exes["file-monitor"], Path(tmp))))
            elif re.search(r"/fdb-sink(:|@)", image):
                results.append((name, *check_sink(name, c, exes["fdb-sink"], Path(tmp))))
    for name, status, msg in results:
        print(f"{status} {name}: {msg}")
    failed = [r for r in results if r[1] == "FAIL"]
    print(f"check_binaries: {len(results)} containers, {sum(r[1] == 'PASS' for r in results)} passed, "
          f"{sum(r[1] == 'SKIP' for r in results)} skipped, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
