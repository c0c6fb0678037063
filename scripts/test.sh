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
NX_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/hush/nx-venv"
if ! command -v nx-27017 >/dev/null 2>&1 && [ -x "$NX_VENV/bin/nx-27017" ]; then
  export PATH="$NX_VENV/bin:$PATH"
fi
if ! command -v nx-27017 >/dev/null 2>&1; then
  echo "installing nx-27017 (pip)"
  if ! python3 -m pip install -q nx-27017 2>/dev/null; then
    # A system Python that refuses pip installs (PEP 668, Debian's python3) or has no pip:
    # install into a virtual environment of our own and put it on PATH for the tests.
    if ! python3 -m venv "$NX_VENV" 2>/dev/null; then
      $(need_root) apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq python3-venv python3-pip >/dev/null
      python3 -m venv "$NX_VENV"
    fi
    "$NX_VENV/bin/pip" install -q nx-27017
    export PATH="$NX_VENV/bin:$PATH"
  fi
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

cargo build --workspace --bins --all-features
cargo test --workspace --all-features --no-fail-fast -- --test-threads="${HUSH_TEST_THREADS:-4}"
