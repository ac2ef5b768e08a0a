#!/usr/bin/env bash
# Installs the system and Python packages the test suite needs. Versions are
# pinned where the registry allows it; Debian packages follow the release.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(
  libclang-dev      # bindgen for the foundationdb crate (cargo check --features fdb)
  inotify-tools     # inotifywait: the peer in the monitor benchmark
  strace            # monitor tests that count the monitor's path lookups
  prometheus        # promtool: alert rule checks and unit tests
  yamllint
  openssl           # deploy/validate.sh: stand-in JWT key pair for the API container check
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -f scripts/requirements-test.txt ]; then
  # CI runs as root in a throwaway machine: pip's warning about that is noise there.
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r scripts/requirements-test.txt
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
