#!/bin/bash
# The group row (one message to a 1,000-member group, until the last member has it), before
# against after, RUNS hush-group processes (300 measured rounds each) per build and encoding,
# interleaved run by run; same pinning as others.sh (hushd on CPU 0 with one worker, the tool
# on CPU 1). The after build's hush-group drives both builds in JSON; in postcard each build's
# own hush-group (1e4dec9's postcard frames differ from today's: the after build's tool gets no
# deliveries from it and stops with "a receiver did not drain its queue").
# Usage: benches/scripts/targets/group-ba.sh OUTDIR   (RUNS=3; BEFORE / AFTER: binary folders)
#   GROUP_DATA: where each build's data folder goes ($GROUP_DATA-before, $GROUP_DATA-after),
#     each made here on first use by its own build (benches/scripts/actor-move/start.sh) and
#     one unmeasured hush-group run that creates the 1,000 members. One folder per build: the
#     before build (1e4dec9) cannot change its bootstrap password (its one-time password is kept
#     in $GROUP_DATA-before.pw) and refuses a password the after build stored; the after build
#     sets bench-admin-password-1.
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
RUNS=${RUNS:-3}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
GROUP_DATA=${GROUP_DATA:-/tmp/tg-group}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PORT=18830
ulimit -n 20000
source "$(dirname "$0")/lib.sh"   # start, stop, ticks, up
pw_of() { cat "$GROUP_DATA-$1.pw" 2>/dev/null || echo bench-admin-password-1; }
group() { # build tool-dir rounds extra-flags...
  local b=$1 tool=$2 rounds=$3; shift 3
  HUSH_ADMIN_PASSWORD=$(pw_of "$b") taskset -c 1 "$tool/hush-group" --server "http://127.0.0.1:$PORT" \
    --members 1000 --rounds "$rounds" --warmup 20 "$@" 2>&1
}
for b in before after; do
  d=$GROUP_DATA-$b; dir=$BEFORE; [ $b = after ] && dir=$AFTER
  [ -d "$d" ] && continue
  pid=$("$ROOT/benches/scripts/actor-move/start.sh" "$dir" $PORT "$d")
  [ $b = before ] && sed -n 's/^One-time password (shown only now): //p' "$d.out" | tr -d '[:space:]' > "$d.pw"
  group $b "$dir" 10 > "$OUTDIR/group-setup-$b.txt"
  stop "$pid"
done
for r in $(seq 1 "$RUNS"); do
  for enc in postcard json; do
    for b in before after; do
      dir=$BEFORE; [ $b = after ] && dir=$AFTER
      flag=""; tool=$dir; [ $enc = json ] && { flag=--json; tool=$AFTER; }
      pid=$(start "$dir" "$GROUP_DATA-$b" $PORT)
      group $b "$tool" 300 $flag | tee -a "$OUTDIR/group-raw.txt" | grep -E "last member|Accepted" \
        | sed "s/^/$b $enc run $r: /" | tee -a "$OUTDIR/group.txt"
      stop "$pid"
    done
  done
done
