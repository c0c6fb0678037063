#!/bin/bash
# start.sh BIN PORT DATA -> starts hushd pinned to CPU 0, sets the admin password, prints PID
set -e
BIN=$1; PORT=$2; DATA=$3
rm -rf "$DATA"; mkdir -p "$DATA"
taskset -c 0 "$BIN/hushd" --listen 127.0.0.1:$PORT --data-dir "$DATA" --workers 1 > "$DATA.out" 2> "$DATA.log" &
PID=$!
for i in $(seq 1 100); do grep -q "listening on" "$DATA.out" 2>/dev/null && break; sleep 0.1; done
OTP=$(sed -n 's/^One-time password (shown only now): //p' "$DATA.out" | tr -d '[:space:]')
if [ -n "$OTP" ]; then
  TOKEN=$(curl -s -X POST http://127.0.0.1:$PORT/v1/login -H 'content-type: application/json' \
    -d "{\"tenant\":\"default\",\"user\":\"admin\",\"password\":\"$OTP\",\"device\":{\"registration_id\":1}}" | python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])')
  curl -s -o /dev/null -w "%{http_code}\n" -X POST http://127.0.0.1:$PORT/v1/account/password -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"current_password\":\"$OTP\",\"new_password\":\"bench-admin-password-1\"}" >&2
fi
echo $PID
