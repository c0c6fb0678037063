#!/bin/bash
# The group row seen from the node: one hush-group process (ROUNDS measured rounds, postcard
# unless ENC=json) against the AFTER build, with the node's socket syscalls traced
# (`perf record` of sys_enter_recvfrom / sys_enter_sendto / sys_enter_writev, timestamps only)
# from the moment every member is online, and the CPU time of both processes over the measured
# rounds. group_trace.py then splits the trace into rounds and reports, per round, the node's
# own fan-out time (the sender's GroupSend read -> the last member's Deliver written) beside
# what hush-group saw (the last member has it).
# With PROFILE=1: a CPU profile instead (perf record -F 499, DWARF call graphs), folded into
# OUTDIR/group-<enc>-cpu.folded for stackshare.py.
# Usage: benches/scripts/targets/group-trace.sh OUTDIR   (ROUNDS=300; AFTER: binary folder;
#   GROUP_DATA: a data folder as group-ba.sh makes it, whose administrator has no second factor)
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
ROUNDS=${ROUNDS:-300}; ENC=${ENC:-postcard}
AFTER=${AFTER:-/work/perf-bin/t-after}
GROUP_DATA=${GROUP_DATA:-/tmp/tg-group-after}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PORT=18830
ulimit -n 20000
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
source "$(dirname "$0")/lib.sh"   # start, stop, ticks, up
flag=""; [ "$ENC" = json ] && flag=--json
out="$OUTDIR/group-$ENC"
pid=$(start "$AFTER" "$GROUP_DATA" $PORT)
taskset -c 1 "$AFTER/hush-group" --server "http://127.0.0.1:$PORT" --members 1000 --rounds "$ROUNDS" \
  --warmup 20 $flag > "$out.txt" 2>&1 &
gp=$!
up "$out.txt" "receivers online" $gp
g0=$(ticks "$gp")
# hush-group's CPU: its last sample before it exits (its /proc entry goes with it).
( while kill -0 $gp 2>/dev/null; do t=$(ticks $gp); [ "$t" != -1 ] && echo "$t" > "$out.gticks"; sleep 0.05; done ) &
if [ -n "${PROFILE:-}" ]; then  # CPU profile instead of the syscall trace
  perf record -F 499 --call-graph dwarf,16384 -p "$pid" -o "/tmp/perf-group-$ENC-cpu.data" > /dev/null 2>&1 &
else
  perf record -e syscalls:sys_enter_recvfrom -e syscalls:sys_enter_sendto -e syscalls:sys_enter_writev \
    -p "$pid" -o "/tmp/perf-group-$ENC.data" > /dev/null 2>&1 &
fi
pp=$!
n0=$(ticks "$pid"); t0=$(date +%s.%N)
wait $gp
n1=$(ticks "$pid"); t1=$(date +%s.%N)
kill -INT $pp; wait $pp 2>/dev/null
stop "$pid"
g1=$(cat "$out.gticks")
{
  echo "wall $(python3 -c "print(round($t1 - $t0, 2))") s; hushd CPU $(( (n1 - n0) * 10 )) ms; hush-group CPU $(( (g1 - g0) * 10 )) ms (last 50 ms sample)"
  grep -E "last member|Accepted" "$out.txt"
} | tee "$out.cpu"
if [ -n "${PROFILE:-}" ]; then
  perf script -i "/tmp/perf-group-$ENC-cpu.data" 2>/dev/null | COLLAPSE_MIN_SHARE=0 \
    python3 "$ROOT/benches/scripts/targets/collapse.py" > "$out-cpu.folded"
  exit 0
fi
perf script -i "/tmp/perf-group-$ENC.data" -F tid,time,event 2>/dev/null > "$out.trace"
python3 "$ROOT/benches/scripts/targets/group_trace.py" "$out.trace" | tee "$out.rounds"
