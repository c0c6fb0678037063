#!/bin/bash
cd /work/main/benches/scripts/targets
source ./lib.sh
ulimit -n 20000
while pgrep -f group-before.sh >/dev/null; do sleep 2; done
OTP=$(sed -n 's/^One-time password (shown only now): //p' /tmp/tg-group.out | tr -d '[:space:]')
for r in 1 2 3; do
  pid=$(start /work/perf-bin/t-1e4 /tmp/tg-group-before 18830)
  HUSH_ADMIN_PASSWORD=$OTP taskset -c 1 /work/perf-bin/t-1e4/hush-group --server http://127.0.0.1:18830 --members 1000 --rounds 300 --warmup 20 2>&1 \
    | tee -a /tmp/s14/group/group-raw-before.txt | grep -E "last member|Accepted|Error" | sed "s/^/before postcard (own tool) run $r: /" | tee -a /tmp/s14/group/group.txt
  stop "$pid"
done
for r in 1 2; do for b in t-grp t-main; do
  pid=$(start /work/perf-bin/$b /tmp/tg-group-after 18830)
  HUSH_ADMIN_PASSWORD=bench-admin-password-1 taskset -c 1 /work/perf-bin/t-main/hush-group --server http://127.0.0.1:18830 --members 1000 --rounds 300 --warmup 20 2>&1 \
    | grep -E "last member|Accepted|Error" | sed "s/^/$b postcard run $r: /" | tee -a /tmp/s14/group/grp-vs-main.txt
  stop "$pid"
done; done
date -u +"group2 done %T" >> /tmp/s14/times.txt
