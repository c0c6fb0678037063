#!/bin/bash
# The before build's group runs (group-ba.sh's loop; its folder's administrator still has the
# one-time password of its first run, which the before build cannot change).
cd /work/main/benches/scripts/targets
source ./lib.sh
ulimit -n 20000
export HUSH_ADMIN_PASSWORD=$(sed -n 's/^One-time password (shown only now): //p' /tmp/tg-group.out | tr -d '[:space:]')
for r in 1 2 3; do for enc in postcard json; do
  flag=""; [ $enc = json ] && flag=--json
  pid=$(start /work/perf-bin/t-1e4 /tmp/tg-group-before 18830)
  taskset -c 1 /work/perf-bin/t-main/hush-group --server http://127.0.0.1:18830 --members 1000 --rounds 300 --warmup 20 $flag 2>&1 \
    | tee -a /tmp/s14/group/group-raw-before.txt | grep -E "last member|Accepted|Error" | sed "s/^/before $enc run $r: /" | tee -a /tmp/s14/group/group.txt
  stop "$pid"
done; done
date -u +"group before done %T" >> /tmp/s14/times.txt
