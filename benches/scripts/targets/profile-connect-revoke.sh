#!/bin/bash
# Issue 15, session 8: where the time goes when 10,000 clients connect and when 1,000 live
# sessions are revoked, and the group row in 3 processes per encoding. After build unless
# said; same pinning as others.sh (hushd on CPU 0 with one worker, the tool on CPU 1).
# Usage: benches/scripts/targets/profile-connect-revoke.sh OUTDIR   (SECTIONS="connect revoke group")
#   connect: per encoding, RUNS timed runs of hush-load --connections 10000 --rate 0 with hushd's
#            and hush-load's CPU sampled every 0.1 s (<enc>-connect-N.load, .cpu), one run under
#            `perf stat -e syscalls:sys_enter_*` (<enc>-connect.syscalls), one under
#            `perf record -F 999 --call-graph dwarf` (perf data in /tmp/perf-<enc>-connect.data).
#   revoke:  per encoding, RUNS runs of hush-revoke (<enc>-revoke.txt, with hushd's own
#            `revocation stored and broadcast` log line: stored_ms, kicked_ms), then one under
#            perf record from the moment the sockets are up (/tmp/perf-<enc>-revoke.data).
#   group:   RUNS hush-group processes (300 rounds each) per encoding on the after build and
#            postcard on the before build (group.txt). GROUP_AFTER_DATA: the after build's data
#            folder (default /tmp/tg-after). hush-group cannot answer an MFA challenge, so once
#            hush-revoke has enrolled the administrator's TOTP there, use a fresh folder:
#              benches/scripts/actor-move/start.sh /work/perf-bin/t-after 18820 /tmp/tg-group-after
#            (then stop that hushd; hush-group's first run on it creates the 1,000 members).
# Then `benches/scripts/targets/profile-connect-revoke.sh OUTDIR fold` turns each perf data file
# into OUTDIR/<name>.folded (collapse.py; slow: perf resolves inlined frames with addr2line);
# stackshare.py reads them (self time, inclusive share of named functions).
# Each section holds /work/QUIET while it measures (removed on exit, also on failure).
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
RUNS=${RUNS:-3}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
IDLE_DATA=${IDLE_DATA:-/tmp/hush-idle-19000}
TOKENS=${TOKENS:-/tmp/hush-load-http___127_0_0_1_18700_default_idle.json}
SECTIONS=${SECTIONS:-connect revoke group}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ulimit -n 20000
source "$(dirname "$0")/lib.sh"   # start, stop, ticks, up
on() { [[ " $SECTIONS " == *" $1 "* ]]; }

if [ "${2:-}" = fold ]; then
  for f in /tmp/perf-*-connect.data /tmp/perf-*-revoke.data; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .data); name=${name#perf-}
    [ "$OUTDIR/$name.folded" -nt "$f" ] && continue
    perf script -i "$f" 2>/dev/null | COLLAPSE_MIN_SHARE=0 python3 "$ROOT/benches/scripts/targets/collapse.py" > "$OUTDIR/$name.folded"
  done
  exit 0
fi

quiet_on() {
  while [ -e /work/QUIET ] && ! grep -q wt15 /work/QUIET; do echo "waiting for /work/QUIET: $(cat /work/QUIET)"; sleep 10; done
  echo "wt15 measuring ($1)" > /work/QUIET
  # Builds started before the file appeared finish first (at most BUILD_WAIT_2S x 2 s, default 3 min).
  for i in $(seq 1 ${BUILD_WAIT_2S:-90}); do pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null || break; sleep 2; done
}
quiet_off() { grep -q wt15 /work/QUIET 2>/dev/null && rm -f /work/QUIET; }
trap quiet_off EXIT
trap 'exit 130' INT TERM   # exit (and so the EXIT trap), not just clean up and go on

# Samples utime+stime (clock ticks of 10 ms) of two PIDs every 0.1 s: "unix_time first second" (here: hush-load, hushd).
sampler() { while kill -0 "$1" 2>/dev/null; do echo "$(date +%s.%N) $(ticks "$1") $(ticks "$2")"; sleep 0.1; done; }
SYSCALLS=$(for s in accept4 recvfrom sendto read write writev epoll_wait epoll_ctl futex pread64 pwrite64 \
  fdatasync fsync close setsockopt getsockname mmap munmap madvise brk getrandom ioctl; do printf -- "-e syscalls:sys_enter_%s " $s; done)

connect_run() { # enc kind(run N|syscalls|perf) -> writes $OUTDIR/<enc>-connect-<kind>.load
  local enc=$1 kind=$2 out="$OUTDIR/$1-connect-$2"
  local pid; pid=$(start "$AFTER" "$IDLE_DATA" 18700)
  sleep 1
  local side=""
  taskset -c 1 "$AFTER/hush-load" --server http://127.0.0.1:18700 --connections 10000 --rate 0 \
    --warmup 0 --duration 2 --grace 1 --user-prefix idle --hushd-pid "$pid" --token-cache "$TOKENS" \
    --encoding "$enc" > "$out.load" 2>&1 &
  local lp=$!
  case $kind in
    syscalls) perf stat -x, $SYSCALLS -p "$pid" -o "$out.syscalls" & side=$! ;;
    perf) perf record -F 999 --call-graph dwarf,16384 -o "/tmp/perf-$enc-connect.data" -p "$pid" >/dev/null 2>&1 & side=$! ;;
    *) sampler "$lp" "$pid" > "$out.cpu" & side=$! ;;
  esac
  up "$out.load" "connections up" $lp
  date +%s.%N > "$out.upat"
  [ "$kind" = syscalls ] || [ "$kind" = perf ] && kill -INT $side
  echo "hushd ticks at up: $(ticks "$pid")" >> "$out.upat"
  wait $lp; wait $side 2>/dev/null
  stop "$pid"
  grep -E "connections up" "$out.load" | sed "s/^/$enc connect $kind: /"
}

if on connect; then
  quiet_on connect
  for enc in postcard json; do
    for r in $(seq 1 "$RUNS"); do connect_run $enc run$r; done
    connect_run $enc syscalls
    connect_run $enc perf
  done
  quiet_off
fi

revoke_run() { # enc label perf?
  local enc=$1 label=$2 prof=${3:-}
  local pid; pid=$(start "$AFTER" /tmp/tg-after 18820)
  local flag=""; [ $enc = json ] && flag=--json
  local out="$OUTDIR/$enc-revoke-$label.out"
  HUSH_ADMIN_PASSWORD=bench-admin-password-1 taskset -c 1 "$AFTER/hush-revoke" --servers http://127.0.0.1:18820 \
    --sessions 1000 $flag > "$out" 2>&1 &
  local lp=$! side=""
  up "$out" "sockets up" $lp
  local t0; t0=$(ticks "$pid")
  [ -n "$prof" ] && { perf record -F 999 --call-graph dwarf,16384 -o "/tmp/perf-$enc-revoke.data" -p "$pid" >/dev/null 2>&1 & side=$!; }
  wait $lp
  local t1; t1=$(ticks "$pid")
  [ -n "$side" ] && { kill -INT $side; wait $side 2>/dev/null; }
  sleep 0.5
  {
    grep -E "call ->|revoked" "$out" | sed "s/^/$enc revoke $label: /"
    echo "$enc revoke $label: hushd CPU from sockets up to the tool's exit: $(( (t1 - t0) * 10 )) ms"
    grep "revocation stored" /tmp/tg-after.log | tail -1 | sed 's/\x1b\[[0-9;]*m//g' \
      | grep -oE "asked=.*" | sed "s/^/$enc revoke $label: hushd log: /"
  } | tee -a "$OUTDIR/revoke.txt"
  stop "$pid"
}

if on revoke; then
  quiet_on revoke
  for enc in postcard json; do
    for r in $(seq 1 "$RUNS"); do revoke_run $enc run$r; done
    revoke_run $enc perf 1
  done
  quiet_off
fi

if on group; then
  for b in ${GROUP_BUILDS:-after before}; do
    for enc in ${GROUP_ENCS:-postcard json}; do
      [ $b = before ] && [ $enc = json ] && continue
      quiet_on "group $b $enc"
      dir=$AFTER; port=18820; data=${GROUP_AFTER_DATA:-/tmp/tg-after}; [ $b = before ] && { dir=$BEFORE; port=18810; data=/tmp/tg-before; }
      pw=bench-admin-password-1; [ $b = before ] && pw=$(cat /tmp/tg-before.pw)
      flag=""; [ $enc = json ] && flag=--json
      for r in $(seq 1 "$RUNS"); do
        pid=$(start "$dir" "$data" $port)
        HUSH_ADMIN_PASSWORD=$pw taskset -c 1 "$dir/hush-group" --server "http://127.0.0.1:$port" --members 1000 \
          --rounds 300 --warmup 20 $flag 2>&1 | tee -a "$OUTDIR/group-raw.txt" | grep -E "last member|Accepted" | sed "s/^/$b group $enc run $r: /" \
          | tee -a "$OUTDIR/group.txt"
        stop "$pid"
      done
      quiet_off
    done
  done
fi
