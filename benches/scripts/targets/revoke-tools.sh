#!/bin/bash
# Issue 15, session 15: the revocation row (1,000 live sessions, call -> last close) with the
# measuring tool as a variable. Interleaved round by round, same pinning as others.sh (hushd on
# CPU 0 with one worker, the tool on CPU 1):
#   before build, JSON, new tool   |  after build, JSON, new tool   |  after build, postcard, new tool
#   after build, JSON, old tool    |  after build, postcard, old tool
# "old tool": hush-revoke of a build before session 15 (the SDK's 128 KiB read buffer; each
# socket freed as soon as it has its close frame). "new tool": this session's (8 KiB; each
# socket ends its side at once, the connections are freed after every close is measured).
# JSON only across builds: 1e4dec9's postcard frames differ from today's (see group-ba.sh).
# Usage: benches/scripts/targets/revoke-tools.sh OUTDIR   (RUNS=3)
#   BEFORE: folder with the before build's hushd; AFTER: the after build's hushd and new
#   hush-revoke; OLD_TOOL: folder with the old hush-revoke.
#   REVOKE_DATA: the after build's folder (as in connect-revoke.sh, port 18820);
#   BEFORE_DATA: the before build's own folder, made here on first use (port 18810): its
#     bootstrap password cannot be changed by that build, so its one-time password is kept in
#     $BEFORE_DATA.pw, and one unmeasured run creates the users and enrols the TOTP.
# Output: OUTDIR/revoke.txt (one line per run and figure), raw tool output beside it.
set -uo pipefail
OUTDIR=${1:?outdir}; mkdir -p "$OUTDIR"
RUNS=${RUNS:-3}
BEFORE=${BEFORE:-/work/perf-bin/t-before}; AFTER=${AFTER:-/work/perf-bin/t-after}
OLD_TOOL=${OLD_TOOL:-/work/perf-bin/t-old-tool}
REVOKE_DATA=${REVOKE_DATA:-/tmp/tg-revoke}; BEFORE_DATA=${BEFORE_DATA:-/tmp/tg-revoke-1e4}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ulimit -n 20000
source "$(dirname "$0")/lib.sh"   # start, stop, ticks, up

revoke() { # label hushd-dir data port password tool-dir flag
  local label=$1 dir=$2 data=$3 port=$4 pw=$5 tool=$6 flag=${7:-}
  local out="$OUTDIR/$label.txt"
  local pid; pid=$(start "$dir" "$data" "$port")
  HUSH_ADMIN_PASSWORD=$pw taskset -c 1 "$tool/hush-revoke" --servers "http://127.0.0.1:$port" \
    --sessions 1000 $flag > "$out" 2>&1
  {
    grep -E "call ->|revoked" "$out" | sed "s/^/$label: /"
    grep "revocation stored" "$data.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' \
      | grep -oE "asked=.*" | sed "s/^/$label: hushd log: /"
  } | tee -a "$OUTDIR/revoke.txt"
  stop "$pid"
}

if [ ! -d "$BEFORE_DATA" ]; then
  pid=$("$ROOT/benches/scripts/actor-move/start.sh" "$BEFORE" 18810 "$BEFORE_DATA" 2>/dev/null)
  sed -n 's/^One-time password (shown only now): //p' "$BEFORE_DATA.out" | tr -d '[:space:]' > "$BEFORE_DATA.pw"
  stop "$pid"
  revoke setup-before "$BEFORE" "$BEFORE_DATA" 18810 "$(cat "$BEFORE_DATA.pw")" "$AFTER" --json
fi
PW_BEFORE=$(cat "$BEFORE_DATA.pw"); PW=bench-admin-password-1
for r in $(seq 1 "$RUNS"); do
  revoke "before-json-new-$r" "$BEFORE" "$BEFORE_DATA" 18810 "$PW_BEFORE" "$AFTER" --json
  revoke "after-json-new-$r" "$AFTER" "$REVOKE_DATA" 18820 "$PW" "$AFTER" --json
  revoke "after-postcard-new-$r" "$AFTER" "$REVOKE_DATA" 18820 "$PW" "$AFTER"
  revoke "after-json-old-$r" "$AFTER" "$REVOKE_DATA" 18820 "$PW" "$OLD_TOOL" --json
  revoke "after-postcard-old-$r" "$AFTER" "$REVOKE_DATA" 18820 "$PW" "$OLD_TOOL"
done
