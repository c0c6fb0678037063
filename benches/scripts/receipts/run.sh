#!/bin/bash
# 1:1 relay with and without a delivery receipt per message, interleaved rate by rate, on one
# node (CPU 0, --workers 1) with hush-load on CPU 1, 1,000 connections, 256 B.
# Usage: benches/scripts/receipts/run.sh "1000 3000 5000" [RUNS]   (release binaries)
set -euo pipefail
RATES=${1:-"1000 3000 5000"}; RUNS=${2:-1}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=$ROOT/target/release
DATA=/tmp/hush-receipts; PORT=18760
OUT=${OUT:-/tmp/hush-receipts.results}   # raw RESULT lines: "run rate mode {json}"
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
PID=$("$ROOT/benches/scripts/actor-move/start.sh" "$BIN" $PORT "$DATA")
trap 'kill $PID 2>/dev/null || true' EXIT
for r in $(seq 1 "$RUNS"); do
  for rate in $RATES; do
    for mode in plain receipts; do
      flag=""; [ "$mode" = receipts ] && flag="--receipts"
      res=$(taskset -c 1 "$BIN/hush-load" --server http://127.0.0.1:$PORT --connections 1000 --rate "$rate" \
        --payload 256 --warmup 5 --duration 20 --json --hushd-pid $PID --user-prefix rc $flag 2>&1 \
        | grep '^RESULT' | sed 's/^RESULT //')
      echo "$r $rate $mode $res" | tee -a "$OUT" | python3 "$ROOT/benches/scripts/receipts/row.py"
    done
  done
done
