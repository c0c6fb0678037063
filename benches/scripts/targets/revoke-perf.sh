#!/bin/bash
# Issue 15, session 15: one hush-revoke run (1,000 sessions, /tmp/tg-revoke, port 18820) with
# `perf record` of both cores from the moment the sockets are up (1.3 s).
# Usage: revoke-perf.sh BINDIR OUT [json]   -> OUT.txt (tool output), OUT.data (perf)
#   PERFARGS (default "-F 15000"; e.g. "-F 9999 --call-graph dwarf,16384"), PERFCPU (default -a;
#   "-C 0" or "-C 1"), NOPERF=1 (no perf: a plain timed run).
# Per-CPU timeline: perf script -i OUT.data -F cpu,time,comm, samples binned by 5 ms.
set -u
BIN=$1; OUT=$2; flag=""; [ "${3:-}" = json ] && flag=--json
ulimit -n 20000
source "$(dirname "$0")/lib.sh"
pid=$(start "$BIN" /tmp/tg-revoke 18820)
HUSH_ADMIN_PASSWORD=bench-admin-password-1 taskset -c 1 "$BIN/hush-revoke" --servers http://127.0.0.1:18820 --sessions 1000 $flag > "$OUT.txt" 2>&1 &
lp=$!
up "$OUT.txt" "sockets up" $lp
if [ -n "${NOPERF:-}" ]; then sleep 1.3; else perf record ${PERFARGS:--F 15000} ${PERFCPU:--a} -o "$OUT.data" -- sleep 1.3 >/dev/null 2>&1; fi
wait $lp
cat "$OUT.txt" | tail -3
grep "revocation stored" /tmp/tg-revoke.log | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | grep -oE "stored_ms.*closed_ms=[0-9]*"
stop $pid
