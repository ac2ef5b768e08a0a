#!/usr/bin/env bash
# Runs every test of the project, installing what the tests need first.
#   ./scripts/test-all.sh            everything (what CI runs)
#   SKIP_INSTALL=1 ./scripts/test-all.sh   skip apt/pip installs
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
step() { printf '\n==> %s\n' "$*"; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  step "installing test prerequisites"
  ./scripts/install-test-deps.sh
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc -D warnings (the API docs' links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo check -p fdb-sink --features fdb (FoundationDB backend compiles; it cannot run here)"
cargo check -p fdb-sink --features fdb --all-targets --locked

step "cargo test --workspace"
cargo test --workspace --locked --no-fail-fast

step "file-monitor integration suite and end-to-end scenarios again, on the notify backend"
FILE_MONITOR_BACKEND=notify cargo test -p monitor --test integration --locked --no-fail-fast
FILE_MONITOR_BACKEND=notify cargo test -p e2e-tests --locked --no-fail-fast

step "README quick start: ./scripts/demo.sh --check (the local pipeline, queried back)"
DEMO_INGEST_PORT=18180 DEMO_API_PORT=18181 DEMO_METRICS_PORT=19190 ./scripts/demo.sh --check

step "README quick start: start-up failures named with their cause (scripts/test-demo.sh)"
./scripts/test-demo.sh

if [ -x "$root/deploy/validate.sh" ]; then
  step "deploy/validate.sh"
  "$root/deploy/validate.sh"
fi
step "all checks passed"
