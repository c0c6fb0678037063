#!/bin/bash
# Issue 15, session 10: connecting 10,000 clients and revoking 1,000 live sessions, before
# against after, interleaved run by run (before, after, before, after, ...) so that both builds
# see the same machine. Same pinning as others.sh: hushd on CPU 0 with one worker (every one of
# its threads on that core), the tool on CPU 1.
# Usage: benches/scripts/targets/connect-revoke.sh OUTDIR   (SECTIONS="connect revoke", RUNS=3)
#   BEFORE / AFTER: folders with hushd, hush-load, hush-revoke of each build.
#   CONNECT_DATA: a data folder with 10,000 users `idle-*` whose tokens are cached in $TOKENS
#     (made once with the before build: benches/scripts/actor-move/start.sh, then hush-load
#     --connections 10000 --rate 0 --user-prefix idle); each build gets its own copy.
#   REVOKE_DATA: a data folder whose administrator password is bench-admin-password-1 and on
#     which hush-revoke ran once on port 18820 (it made the 1,000 users and enrolled the
#     administrator's TOTP); each build gets its own copy. Every run revokes the 1,000 sessions
#     it opened (and the one without a socket each run leaves), so a run's store state does not
#     depend on the build before it.
# Output: OUTDIR/connect.txt, OUTDIR/revoke.txt (one line per run), raw tool output beside them.
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
RUNS=${RUNS:-3}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
CONNECT_DATA=${CONNECT_DATA:-/tmp/hush-idle-10000}
REVOKE_DATA=${REVOKE_DATA:-/tmp/tg-revoke}
TOKENS=${TOKENS:-/tmp/hush-load-http___127_0_0_1_18700_default_idle.json}
SECTIONS=${SECTIONS:-connect revoke}
ulimit -n 20000
source "$(dirname "$0")/lib.sh"   # start, stop, ticks, up
on() { [[ " $SECTIONS " == *" $1 "* ]]; }
dir_of() { [ "$1" = before ] && echo "$BEFORE" || echo "$AFTER"; }
for b in before after; do
  on connect && [ ! -d "$CONNECT_DATA-$b" ] && cp -a "$CONNECT_DATA" "$CONNECT_DATA-$b"
  on revoke && [ ! -d "$REVOKE_DATA-$b" ] && cp -a "$REVOKE_DATA" "$REVOKE_DATA-$b"
done

if on connect; then
  for r in $(seq 1 "$RUNS"); do
    for enc in postcard json; do
      for b in before after; do
        out="$OUTDIR/connect-$b-$enc-$r"
        pid=$(start "$(dir_of $b)" "$CONNECT_DATA-$b" 18700)
        sleep 1
        t0=$(ticks "$pid")
        taskset -c 1 "$AFTER/hush-load" --server http://127.0.0.1:18700 --connections 10000 --rate 0 \
          --warmup 0 --duration 2 --grace 1 --user-prefix idle --hushd-pid "$pid" --token-cache "$TOKENS" \
          --encoding $enc > "$out.load" 2>&1 &
        lp=$!
        up "$out.load" "connections up" $lp
        t1=$(ticks "$pid")
        wait $lp
        stop "$pid"
        line=$(grep -oE "connections up.*" "$out.load")
        echo "$b $enc run $r: $line; hushd CPU to connections up: $(( (t1 - t0) * 10 )) ms" | tee -a "$OUTDIR/connect.txt"
      done
    done
  done
fi

if on revoke; then
  for r in $(seq 1 "$RUNS"); do
    for enc in postcard json; do
      for b in before after; do
        out="$OUTDIR/revoke-$b-$enc-$r"
        data="$REVOKE_DATA-$b"
        pid=$(start "$(dir_of $b)" "$data" 18820)
        flag=""; [ $enc = json ] && flag=--json
        HUSH_ADMIN_PASSWORD=bench-admin-password-1 taskset -c 1 "$AFTER/hush-revoke" --servers http://127.0.0.1:18820 \
          --sessions 1000 $flag > "$out.txt" 2>&1 &
        lp=$!
        up "$out.txt" "sockets up" $lp
        t0=$(ticks "$pid")
        wait $lp
        t1=$(ticks "$pid")
        sleep 0.5
        {
          grep -E "call ->|revoked" "$out.txt" | sed "s/^/$b $enc run $r: /"
          echo "$b $enc run $r: hushd CPU from sockets up to the tool's exit: $(( (t1 - t0) * 10 )) ms"
          grep "revocation stored" "$data.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' \
            | grep -oE "asked=.*" | sed "s/^/$b $enc run $r: hushd log: /"
        } | tee -a "$OUTDIR/revoke.txt"
        stop "$pid"
      done
    done
  done
fi
