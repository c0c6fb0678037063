#!/bin/bash
# The 1:1 rows (sustained rate with p99 < 50 ms; p99 at 1,000 msg/s), before against after,
# ROUNDS rounds, postcard and JSON, builds interleaved sweep by sweep; same pinning as run.sh.
# Usage: benches/scripts/targets/plain-ba.sh OUTDIR   (ROUNDS=3, RATES=1000,4000,6000,8000,10000,12000,
#   EXTRA: more hush-load flags, e.g. EXTRA=--receipts)
#   BEFORE / AFTER: binary folders; DATA: the 10,000-user folder of connect-revoke.sh (each build
#   uses its -before / -after copy), users idle-0..999 with the cached tokens.
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
ROUNDS=${ROUNDS:-3}; RATES=${RATES:-1000,4000,6000,8000,10000,12000}; EXTRA=${EXTRA:-}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
DATA=${DATA:-/tmp/hush-idle-10000}
TOKENS=${TOKENS:-/tmp/hush-load-http___127_0_0_1_18700_default_idle.json}
ulimit -n 20000
source "$(dirname "$0")/lib.sh"   # start, stop, ticks, up
for r in $(seq 1 "$ROUNDS"); do
  for enc in postcard json; do
    for b in before after; do
      dir=$BEFORE; [ $b = after ] && dir=$AFTER
      d=$DATA-$b
      pid=$(start "$dir" "$d" 18700)
      sleep 1
      taskset -c 1 "$AFTER/hush-load" --server http://127.0.0.1:18700 --connections 1000 --payload 256 \
        --warmup 3 --duration 10 --grace 5 --rates "$RATES" --sweep-stop-ms 200 --encoding $enc --json $EXTRA \
        --user-prefix idle --hushd-pid $pid --token-cache $TOKENS > "$OUTDIR/plain-$b-$enc-$r.txt" 2>&1
      stop "$pid"
      grep '^RESULT' "$OUTDIR/plain-$b-$enc-$r.txt" | sed "s/^RESULT /$r $b $enc /" >> "$OUTDIR/plain.results"
      echo "$b $enc round $r: $(grep -E '^highest' "$OUTDIR/plain-$b-$enc-$r.txt")"
    done
  done
done
