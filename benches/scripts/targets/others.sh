#!/bin/bash
# Issue 15's other target rows, before against after, same machine and pinning as run.sh:
# one message to a 1,000-member group (hush-group, 300 measured rounds per process), revocation
# of 1,000 live sessions on one node (hush-revoke), connecting 10,000 clients and RSS per idle
# connection at 19,000 (hush-load --rate 0). Run after run.sh (it reuses its data folders and
# admin password). Output: $OUT (default /tmp/targets-others.txt).
#   IDLE_DATA: a data folder with 19,000 users `idle-*` (benches/scripts/idle/run.sh makes one);
#   IDLE_TOKENS: their token cache (default $IDLE_DATA.tokens.json: a cache of a folder with fewer
#     users would send hush-load to log in again, as it checks one token picked at random)
set -uo pipefail
RUNS=${1:-3}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
OUT=${OUT:-/tmp/targets-others.txt}
IDLE_DATA=${IDLE_DATA:-/tmp/hush-idle-19000}
IDLE_TOKENS=${IDLE_TOKENS:-$IDLE_DATA.tokens.json}
pw_of() { cat "/tmp/tg-$1.pw" 2>/dev/null || echo bench-admin-password-1; }
ulimit -n 20000
port_of() { [ "$1" = before ] && echo 18810 || echo 18820; }
dir_of() { [ "$1" = before ] && echo "$BEFORE" || echo "$AFTER"; }
start() { # build data port -> PID
  taskset -c 0 "$(dir_of "$1")/hushd" --listen 127.0.0.1:$3 --data-dir "$2" --workers 1 > "$2.out" 2> "$2.log" &
  local pid=$!
  for i in $(seq 1 100); do grep -q "listening on" "$2.out" 2>/dev/null && break; sleep 0.1; done
  echo $pid
}
stop() { kill "$1" 2>/dev/null; while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; sleep 1; }
say() { echo "$*" | tee -a "$OUT"; }
# SECTIONS picks what runs (default all): group revoke idle.
SECTIONS=${SECTIONS:-group revoke idle}
on() { [[ " $SECTIONS " == *" $1 "* ]]; }
for b in before after; do
  # hush-group: the before build's own tool for postcard, the after build's with --json for JSON.
  for enc in postcard json; do
    on group || continue
    tool=$(dir_of $b); flag=""
    [ $enc = json ] && { tool=$AFTER; flag=--json; }
    pid=$(start $b /tmp/tg-$b "$(port_of $b)")
    HUSH_ADMIN_PASSWORD=$(pw_of $b) taskset -c 1 "$tool/hush-group" --server "http://127.0.0.1:$(port_of $b)" --members 1000 \
      --rounds 300 --warmup 20 $flag 2>&1 | grep -E "last member|Accepted" | sed "s/^/$b group $enc: /" | tee -a "$OUT"
    stop "$pid"
  done
  # hush-revoke on one node: a first run left out (it also revokes the sessions run.sh's
  # hush-load left, and makes hush-revoke's users), then $RUNS runs per encoding.
  if on revoke; then
    pid=$(start $b /tmp/tg-$b "$(port_of $b)")
    HUSH_ADMIN_PASSWORD=$(pw_of $b) taskset -c 1 "$(dir_of $b)/hush-revoke" --servers "http://127.0.0.1:$(port_of $b)" \
      --sessions 1000 2>&1 | grep -E "call ->|revoked" | sed "s/^/$b revoke warm-up (left out): /" | tee -a "$OUT"
    stop "$pid"
  fi
  for enc in postcard json; do
    on revoke || continue
    tool=$(dir_of $b); flag=""
    [ $enc = json ] && { tool=$AFTER; flag=--json; }
    for r in $(seq 1 "$RUNS"); do
      pid=$(start $b /tmp/tg-$b "$(port_of $b)")
      HUSH_ADMIN_PASSWORD=$(pw_of $b) taskset -c 1 "$tool/hush-revoke" --servers "http://127.0.0.1:$(port_of $b)" --sessions 1000 \
        $flag 2>&1 | grep -E "call ->|revoked" | sed "s/^/$b revoke $enc run $r: /" | tee -a "$OUT"
      stop "$pid"
    done
  done
done
# Connecting 10,000 clients and idle memory at 19,000, on the 19,000-user data folder (a copy
# for the before build, which must read the after build's store).
for b in after before; do
  on idle || continue
  d=$IDLE_DATA; [ $b = before ] && d=$IDLE_DATA-before
  [ $b = before ] && [ ! -d "$d" ] && cp -a "$IDLE_DATA" "$d"
  for enc in postcard json; do
    tool=$AFTER; flag="--encoding $enc"
    [ $b = before ] && [ $enc = postcard ] && { tool=$BEFORE; flag=""; }
    for n in 10000 19000; do
      for r in $(seq 1 $RUNS); do
        pid=$(start $b "$d" 18700)
        sleep 1
        taskset -c 1 "$tool/hush-load" --server http://127.0.0.1:18700 --connections $n --rate 0 \
          --warmup 0 --duration 2 --grace 1 --user-prefix idle --hushd-pid "$pid" \
          --token-cache "$IDLE_TOKENS" $flag 2>&1 \
          | grep -E "connections up|^hushd RSS: .* before connecting|kernel socket slabs|kernel TCP memory" | sed "s/^/$b idle $enc $n run $r: /" | tee -a "$OUT"
        stop "$pid"
      done
    done
  done
done
