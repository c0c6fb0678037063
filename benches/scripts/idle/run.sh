#!/bin/bash
# Memory per idle authenticated connection at N connections (default 19,000, just under the
# open-file limit of 20,000): hushd's RSS delta and the kernel's TCP socket memory.
# Usage: benches/scripts/idle/run.sh [N] [RUNS]   (release binaries in target/release)
set -euo pipefail
N=${1:-19000}; RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=$ROOT/target/release
DATA=/tmp/hush-idle-$N; PORT=18700
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
ulimit -n 20000
start() {
  taskset -c 0 "$BIN/hushd" --listen 127.0.0.1:$PORT --data-dir "$DATA" --workers 1 > "$DATA.out" 2> "$DATA.log" &
  PID=$!
  for i in $(seq 1 100); do grep -q "listening on" "$DATA.out" 2>/dev/null && break; sleep 0.1; done
}
stop() { # ends the node and waits until it is gone (it drains its sockets first)
  kill $PID 2>/dev/null || true
  while kill -0 $PID 2>/dev/null; do sleep 0.2; done
  sleep 1
}
# Users are made (and their tokens cached) once, on a first node; every measured run starts a
# fresh process on the same data, so the Argon2 arenas of user creation are not in the figure.
if [ ! -d "$DATA" ]; then
  PID=$("$ROOT/benches/scripts/actor-move/start.sh" "$BIN" $PORT "$DATA")
  taskset -c 1 "$BIN/hush-load" --server http://127.0.0.1:$PORT --connections "$N" --rate 0 \
    --warmup 0 --duration 1 --grace 1 --user-prefix idle > "$DATA.setup" 2>&1 || { tail "$DATA.setup"; exit 1; }
  stop
fi
for r in $(seq 1 "$RUNS"); do
  start
  sleep 1
  taskset -c 1 "$BIN/hush-load" --server http://127.0.0.1:$PORT --connections "$N" --rate 0 \
    --warmup 0 --duration 5 --grace 1 --user-prefix idle --hushd-pid $PID --json 2>&1 \
    | grep -E "KB per connection|kernel TCP|connections up|RESULT" | sed "s/^/run $r: /"
  stop
done
