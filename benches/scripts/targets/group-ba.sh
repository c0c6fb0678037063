#!/bin/bash
# The group row (one message to a 1,000-member group, until the last member has it), before
# against after, RUNS hush-group processes (300 measured rounds each) per build and encoding,
# interleaved run by run; same pinning as others.sh (hushd on CPU 0 with one worker, the tool
# on CPU 1). The after build's hush-group drives both builds (their frames are the same).
# Usage: benches/scripts/targets/group-ba.sh OUTDIR   (RUNS=3; BEFORE / AFTER: binary folders)
#   GROUP_DATA: a data folder whose administrator has no second factor and whose password is
#     bench-admin-password-1 (made here on first use by the after build with
#     benches/scripts/actor-move/start.sh and one unmeasured hush-group run that creates the
#     1,000 members); each build gets a copy.
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
RUNS=${RUNS:-3}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
GROUP_DATA=${GROUP_DATA:-/tmp/tg-group}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PORT=18830
ulimit -n 20000
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
source "$(dirname "$0")/lib.sh"   # start, stop, ticks, up
group() { # rounds, extra flags...
  local rounds=$1; shift
  taskset -c 1 "$AFTER/hush-group" --server "http://127.0.0.1:$PORT" --members 1000 --rounds "$rounds" --warmup 20 "$@" 2>&1
}
if [ ! -d "$GROUP_DATA" ]; then
  # Made by the after build: the before build (1e4dec9) cannot change the bootstrap password, so
  # a folder it made keeps its one-time password, which HUSH_ADMIN_PASSWORD above is not.
  pid=$("$ROOT/benches/scripts/actor-move/start.sh" "$AFTER" $PORT "$GROUP_DATA")
  group 10 > "$OUTDIR/group-setup.txt"
  stop "$pid"
fi
for b in before after; do
  [ -d "$GROUP_DATA-$b" ] || cp -a "$GROUP_DATA" "$GROUP_DATA-$b"
done
for r in $(seq 1 "$RUNS"); do
  for enc in postcard json; do
    for b in before after; do
      dir=$BEFORE; [ $b = after ] && dir=$AFTER
      flag=""; [ $enc = json ] && flag=--json
      pid=$(start "$dir" "$GROUP_DATA-$b" $PORT)
      group 300 $flag | tee -a "$OUTDIR/group-raw.txt" | grep -E "last member|Accepted" \
        | sed "s/^/$b $enc run $r: /" | tee -a "$OUTDIR/group.txt"
      stop "$pid"
    done
  done
done
