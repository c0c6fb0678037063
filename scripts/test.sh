#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs what is missing
# (redis-server, chromium and chromium-driver from apt; the MongoDB-wire test server nx-27017
# and openapi-spec-validator from pip; @asyncapi/parser and libsignal from npm), builds every binary the black-box tests start, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() { if [ "$(id -u)" -ne 0 ]; then echo sudo; fi; }

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (apt)"
  $(need_root) apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq redis-server >/dev/null
fi
# Python tools from PyPI: nx-27017 (the MongoDB-wire test server), openapi-spec-validator
# (the independent check of /openapi.json) and schemathesis (fuzzes a node against it; both in
# tests/tests/openapi.rs). Installed with pip, or into a virtual environment of our own when the
# system Python refuses pip installs (PEP 668, Debian's python3) or has no pip; that environment
# is put on PATH for the tests.
PY_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/hush/py-venv"
if [ -d "$PY_VENV/bin" ]; then
  export PATH="$PATH:$PY_VENV/bin"
fi
pip_tool() { # pip_tool COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (pip)"
  if ! python3 -m pip install -q "$2" 2>/dev/null; then
    if [ ! -x "$PY_VENV/bin/pip" ]; then
      if ! python3 -m venv "$PY_VENV" 2>/dev/null; then
        $(need_root) apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq python3-venv python3-pip >/dev/null
        python3 -m venv "$PY_VENV"
      fi
    fi
    "$PY_VENV/bin/pip" install -q "$2"
    export PATH="$PATH:$PY_VENV/bin"
  fi
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
}
pip_tool nx-27017 nx-27017
pip_tool openapi-spec-validator openapi-spec-validator
# schemathesis: fuzzes a real node against /openapi.json for a bounded time (tests/tests/openapi.rs).
pip_tool schemathesis schemathesis
# PyYAML, for the test that parses docs/asyncapi.yaml (tests/tests/openapi.rs).
if ! python3 -c 'import yaml' 2>/dev/null && ! "$PY_VENV/bin/python3" -c 'import yaml' 2>/dev/null; then
  echo "installing PyYAML (pip)"
  python3 -m pip install -q pyyaml 2>/dev/null || {
    [ -x "$PY_VENV/bin/pip" ] || python3 -m venv "$PY_VENV"
    "$PY_VENV/bin/pip" install -q pyyaml
  }
fi
# The official AsyncAPI parser (npm), for the test that validates docs/asyncapi.yaml; needs Node.
ASYNCAPI_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/hush/asyncapi"
if [ ! -d "$ASYNCAPI_DIR/node_modules/@asyncapi/parser" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm (apt)"
    $(need_root) apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "installing @asyncapi/parser (npm)"
  mkdir -p "$ASYNCAPI_DIR"
  npm install --silent --no-audit --no-fund --prefix "$ASYNCAPI_DIR" @asyncapi/parser@3.6.3 >/dev/null
fi
# libsignal itself (npm `@signalapp/libsignal-client` 0.103.0, pinned by each package-lock.json):
# protocol/tools/libsignal-vectors for the library's interop tests (e2e_libsignal_interop.rs,
# e2e_sender_keys_kat.rs), and the example app examples/libsignal-app (with `ws`), which
# tests/tests/libsignal_app.rs runs against a node. The tests fail, naming this, if it is missing.
for dir in protocol/tools/libsignal-vectors examples/libsignal-app; do
  if [ ! -d "$dir/node_modules/@signalapp/libsignal-client" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "installing nodejs and npm (apt)"
      $(need_root) apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq nodejs npm >/dev/null
    fi
    echo "installing libsignal (npm ci in $dir)"
    npm ci --silent --no-audit --no-fund --prefix "$dir" >/dev/null
  fi
done

# A headless browser for the admin console's tests (tests/tests/console_browser.rs): Debian's
# chromium and its WebDriver, chromedriver (package chromium-driver).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (apt)"
  $(need_root) apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo build --workspace --bins --all-features
# The tools above are installed: a test that cannot find one fails instead of skipping.
export HUSH_REQUIRE_TOOLS=1
cargo test --workspace --all-features --no-fail-fast -- --test-threads="${HUSH_TEST_THREADS:-4}"
