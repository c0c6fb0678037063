#!/bin/bash
# profile.sh WHICH PORT DATA: 5,000 msg/s for 25 s, perf record of hushd for 10 s in the middle
b=$1; port=$2; d=$3
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
taskset -c 0 /work/perf-bin/$b/hushd --listen 127.0.0.1:$port --data-dir $d --workers 1 > $d.out 2> $d.log &
pid=$!
for i in $(seq 1 100); do grep -q "listening on" $d.out 2>/dev/null && break; sleep 0.1; done
taskset -c 1 /work/perf-bin/$b/hush-load --server http://127.0.0.1:$port --connections 1000 --rate 5000 \
  --payload 256 --warmup 5 --duration 20 --json --hushd-pid $pid > /work/perf/profile-$b.load 2>&1 &
lp=$!
sleep 10
perf record -F 999 -g -p $pid -o /work/perf/perf-$b.data -- sleep 10 2>/dev/null
wait $lp
kill $pid; wait $pid 2>/dev/null
perf report -i /work/perf/perf-$b.data --no-children --percent-limit 1.5 --stdio 2>/dev/null | grep -v "^$" | grep "%" | head -40 > /work/perf/profile-$b.txt
