#!/bin/bash
# CPU profiles of the after build under load (syscall counts for 3 s, then perf with DWARF
# call graphs for 6 s of the measured window) and a heap profile of 10,000 idle connections (heaptrack).
# Usage: benches/scripts/targets/profile.sh OUTDIR   (AFTER=dir with hushd and hush-load)
#   SPECS: the loads ("name rate [hush-load flags]", default the four below); HEAP=0 skips heaptrack;
#   LOAD_DATA / LOAD_PORT / LOAD_PREFIX / LOAD_TOKENS: the data folder the loads run on (default
#   run.sh's /tmp/tg-after, port 18820, users tg-*, hush-load's own token cache).
# Writes OUTDIR/<name>.folded (stack;frames count, the flame graph's text form, stacks under
# 0.05% of samples dropped), OUTDIR/<name>.top (perf report, self time by symbol) and
# OUTDIR/heap-10k.txt (heaptrack_print's summary and peak consumers).
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
AFTER=${AFTER:-/work/perf-bin/t-after}
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ulimit -n 20000
start() { # data port [wrapper...] -> PID of hushd
  local d=$1 port=$2; shift 2
  taskset -c 0 "$@" "$AFTER/hushd" --listen 127.0.0.1:$port --data-dir "$d" --workers 1 > "$d.out" 2> "$d.log" &
  for i in $(seq 1 300); do grep -q "listening on" "$d.out" 2>/dev/null && break; sleep 0.1; done
  pgrep -n -f "$AFTER/hushd --listen 127.0.0.1:$port"
}
stop() { kill "$1" 2>/dev/null; while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; sleep 1; }
collapse() { # perf.data -> folded stacks on stdout
  perf script -i "$1" 2>/dev/null | python3 "$ROOT/benches/scripts/targets/collapse.py"
}
LOAD_DATA=${LOAD_DATA:-/tmp/tg-after}; LOAD_PORT=${LOAD_PORT:-18820}; LOAD_PREFIX=${LOAD_PREFIX:-tg}
TOKEN_FLAG=(); [ -n "${LOAD_TOKENS:-}" ] && TOKEN_FLAG=(--token-cache "$LOAD_TOKENS")
SPECS=${SPECS:-"plain-10k 10000|plain-20k 20000|receipts-10k 10000 --receipts|receipts-20k 20000 --receipts"}
IFS='|' read -r -a SPEC_LIST <<< "$SPECS"
for spec in "${SPEC_LIST[@]}"; do
  set -- $spec; name=$1; rate=$2; shift 2
  pid=$(start "$LOAD_DATA" "$LOAD_PORT")
  taskset -c 1 "$AFTER/hush-load" --server "http://127.0.0.1:$LOAD_PORT" --connections 1000 --payload 256 \
    --warmup 3 --duration 10 --grace 5 --user-prefix "$LOAD_PREFIX" "${TOKEN_FLAG[@]}" --hushd-pid "$pid" --rate "$rate" "$@" \
    > "$OUTDIR/$name.load" 2>&1 &
  lp=$!
  # Record 8 s of the measured window (it starts 3 s after the load, which starts after connecting).
  until grep -q "measure\]" "$OUTDIR/$name.load" 2>/dev/null; do sleep 0.2; kill -0 $lp 2>/dev/null || break; done
  # Syscalls for 3 s (per message: divide by 3 x the rate), then 6 s of call graphs.
  perf stat -x, -e syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev \
    -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait \
    -e syscalls:sys_enter_futex,syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64 \
    -p "$pid" -o "$OUTDIR/$name.syscalls" -- sleep 3 >/dev/null 2>&1
  perf record -F 199 --call-graph dwarf,16384 -o "/tmp/perf-$name.data" -p "$pid" -- sleep 6 >/dev/null 2>&1
  wait $lp
  stop "$pid"
  perf report -i "/tmp/perf-$name.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | grep '%' | head -60 > "$OUTDIR/$name.top"
  collapse "/tmp/perf-$name.data" > "$OUTDIR/$name.folded"
  grep -E "delivery latency|receipt delivery|CPU during" "$OUTDIR/$name.load"
done
[ "${HEAP:-1}" = 0 ] && exit 0
# Heap: 10,000 idle connections under heaptrack, on the 19,000-user data folder.
d=/tmp/hush-idle-19000
rm -f /tmp/heap-10k.zst
pid=$(start $d 18700 heaptrack -o /tmp/heap-10k)
sleep 2
taskset -c 1 "$AFTER/hush-load" --server http://127.0.0.1:18700 --connections 10000 --rate 0 --warmup 0 \
  --duration 5 --grace 1 --user-prefix idle --hushd-pid "$pid" \
  --token-cache /tmp/hush-load-http___127_0_0_1_18700_default_idle.json > "$OUTDIR/heap-10k.load" 2>&1
stop "$pid"
sleep 2
heaptrack_print -f /tmp/heap-10k.zst --flamegraph-cost-type peak -F "$OUTDIR/heap-10k.folded" >/dev/null 2>&1
python3 "$ROOT/benches/scripts/targets/heapsum.py" "$OUTDIR/heap-10k.folded" 10000 > "$OUTDIR/heap-10k.txt"
grep -E "KB per connection" "$OUTDIR/heap-10k.load"; head -12 "$OUTDIR/heap-10k.txt"
