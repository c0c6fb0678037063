#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs what is missing
# (redis-server from apt, the MongoDB-wire test server nx-27017 from pip), builds every binary
# the black-box tests start, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() { if [ "$(id -u)" -ne 0 ]; then echo sudo; fi; }

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (apt)"
  $(need_root) apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq redis-server >/dev/null
fi
if ! command -v nx-27017 >/dev/null 2>&1; then
  echo "installing nx-27017 (pip)"
  python3 -m pip install -q nx-27017
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

cargo build --workspace --bins --all-features
cargo test --workspace --all-features --no-fail-fast -- --test-threads="${HUSH_TEST_THREADS:-4}"
