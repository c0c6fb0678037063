#!/bin/bash
# run3.sh: before vs after2 near the knee, three interleaved runs each at 4,000 and 5,000 msg/s.
set -u
OUT=/work/perf/results3.txt
: > $OUT
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
load() {
  local r
  r=$(taskset -c 1 /work/perf-bin/$1/hush-load --server http://127.0.0.1:$2 --connections $3 --rate $4 \
      --payload 256 --warmup 5 --duration 20 --json --hushd-pid $5 2>&1 | grep '^RESULT' | sed 's/^RESULT //')
  echo "$1 $6 $r" | tee -a $OUT
}
start() {
  taskset -c 0 /work/perf-bin/$1/hushd --listen 127.0.0.1:$3 --data-dir $2 --workers 1 > $2.out 2> $2.log &
  local pid=$!; for i in $(seq 1 100); do grep -q "listening on" $2.out 2>/dev/null && break; sleep 0.1; done; echo $pid
}
for rep in 1 2 3; do
  for rate in 4000 5000; do
    for b in before after2; do
      case $b in before) d=/tmp/perf-before; port=18610;; *) d=/tmp/perf-after; port=18620;; esac
      pid=$(start $b $d $port)
      load $b $port 1000 $rate $pid "rep$rep-rate$rate"
      kill $pid; wait $pid 2>/dev/null; sleep 1
    done
  done
done
echo DONE >> $OUT
