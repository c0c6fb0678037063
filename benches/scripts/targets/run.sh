#!/bin/bash
# Issue 15's target rows, before against after, in one sitting (node on CPU 0 with --workers 1,
# load generator on CPU 1, 1,000 connections, 256 B, 3 s warm-up + 10 s window per rate).
#
# Usage: benches/scripts/targets/run.sh ROUNDS   (default 3)
#   BEFORE=dir with hushd, hush-load, hush-group, hush-revoke built at 1e4dec9 (the issue's commit)
#   AFTER=dir with the same four built at this commit (cargo build --release)
# Raw RESULT lines go to $OUT (default /tmp/targets.results): "round build row {json}".
# The before build's hush-load has no --rates, --receipts or --encoding: its postcard rows are
# swept by one hush-load process per rate on the same node; its JSON and receipts rows use the
# after build's hush-load (the JSON frames of both builds are compatible; the postcard frames
# are not, since content types were added). Postcard with receipts has no before.
set -uo pipefail
ROUNDS=${1:-3}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
OUT=${OUT:-/tmp/targets.results}
pw_of() { cat "/tmp/tg-$1.pw" 2>/dev/null || echo bench-admin-password-1; }
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PLAIN=${PLAIN:-1000,4000,5000,6000,7000,8000}
RECEIPTS=${RECEIPTS_RATES:-1000,2000,3000,4000}
WINDOWS="--warmup 3 --duration 10 --grace 5"
COMMON="--connections 1000 --payload 256 $WINDOWS --json --user-prefix tg"

port_of() { [ "$1" = before ] && echo 18810 || echo 18820; }
dir_of() { [ "$1" = before ] && echo "$BEFORE" || echo "$AFTER"; }
start() { # build -> PID; a fresh process on the build's data folder (made on first use)
  local b=$1 d=/tmp/tg-$1 port; port=$(port_of "$1")
  if [ ! -d "$d" ]; then
    # The before build has no password change: its first password stays (kept in $d.pw).
    "$ROOT/benches/scripts/actor-move/start.sh" "$(dir_of "$b")" "$port" "$d" 2>/dev/null
    [ "$b" = before ] && sed -n 's/^One-time password (shown only now): //p' "$d.out" | tr -d '[:space:]' > "$d.pw"
    return
  fi
  taskset -c 0 "$(dir_of "$b")/hushd" --listen 127.0.0.1:$port --data-dir "$d" --workers 1 > "$d.out" 2> "$d.log" &
  local pid=$!
  for i in $(seq 1 100); do grep -q "listening on" "$d.out" 2>/dev/null && break; sleep 0.1; done
  echo $pid
}
stop() { kill "$1" 2>/dev/null; while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; sleep 1; }
results() { # round build row: keeps the RESULT lines of stdin
  grep '^RESULT' | sed "s/^RESULT /$1 $2 $3 /" | tee -a "$OUT" \
    | python3 "$ROOT/benches/scripts/targets/show.py"
}
sweep() { # round build row hush-load-dir rates extra-flags...
  local r=$1 b=$2 row=$3 tool=$4 rates=$5; shift 5
  local pid; pid=$(start "$b")
  HUSH_ADMIN_PASSWORD=$(pw_of "$b") taskset -c 1 "$tool/hush-load" --server "http://127.0.0.1:$(port_of "$b")" $COMMON --hushd-pid "$pid" \
    --rates "$rates" --sweep-stop-ms 200 "$@" 2>&1 | results "$r" "$b" "$row"
  stop "$pid"
}
sweep_old() { # round build row rates: the before build's own hush-load, one process per rate
  local r=$1 b=$2 row=$3 rates=$4 pid out p99
  pid=$(start "$b")
  for rate in ${rates//,/ }; do
    out=$(HUSH_ADMIN_PASSWORD=$(pw_of "$b") taskset -c 1 "$BEFORE/hush-load" --server "http://127.0.0.1:$(port_of "$b")" $COMMON \
      --hushd-pid "$pid" --rate "$rate" 2>&1 | grep '^RESULT')
    echo "$out" | results "$r" "$b" "$row"
    p99=$(echo "$out" | sed 's/^RESULT //' | python3 -c 'import sys,json; print(json.load(sys.stdin)["p99_ms"])')
    python3 -c "import sys; sys.exit(0 if $p99 > 200 else 1)" && break
    sleep 2
  done
  stop "$pid"
}
# Users and tokens first (not measured): one short run per build.
for b in before after; do
  pid=$(start $b)
  HUSH_ADMIN_PASSWORD=$(pw_of $b) taskset -c 1 "$(dir_of $b)/hush-load" --server "http://127.0.0.1:$(port_of $b)" \
    --connections 1000 --user-prefix tg --rate 100 --warmup 0 --duration 1 > /tmp/tg-$b.setup 2>&1 \
    || { grep -v '^ ' /tmp/tg-$b.setup | tail -5
         grep -q mfa_required /tmp/tg-$b.setup && echo "/tmp/tg-$b: its administrator has a second factor now" \
           "(hush-revoke enrols one, e.g. in others.sh) and its token cache is stale: move the folder aside and run again"
         stop "$pid"; exit 1; }
  stop "$pid"
done
for r in $(seq 1 "$ROUNDS"); do
  sweep_old "$r" before plain-postcard "$PLAIN"
  sweep "$r" after plain-postcard "$AFTER" "$PLAIN"
  sweep "$r" before plain-json "$AFTER" "$PLAIN" --encoding json
  sweep "$r" after plain-json "$AFTER" "$PLAIN" --encoding json
  sweep "$r" after receipts-postcard "$AFTER" "$RECEIPTS" --receipts
  sweep "$r" before receipts-json "$AFTER" "$RECEIPTS" --receipts --encoding json
  sweep "$r" after receipts-json "$AFTER" "$RECEIPTS" --receipts --encoding json
done
