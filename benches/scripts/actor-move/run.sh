#!/bin/bash
# run.sh: hush-load 1:1, before vs after, interleaved, one sitting. Results in /work/perf/results.txt
set -u
OUT=/work/perf/results.txt
: > $OUT
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
declare -A PORT=([before]=18610 [after]=18620)
declare -A IDLEPORT=([before]=18611 [after]=18621)
start() { # which data fresh
  local b=$1 d=$2 fresh=$3 port=$4
  if [ "$fresh" = 1 ]; then /work/perf/start.sh /work/perf-bin/$b $port $d; else
    taskset -c 0 /work/perf-bin/$b/hushd --listen 127.0.0.1:$port --data-dir $d --workers 1 > $d.out 2> $d.log &
    local pid=$!; for i in $(seq 1 100); do grep -q "listening on" $d.out 2>/dev/null && break; sleep 0.1; done; echo $pid; fi
}
load() { # which port conns rate pid label
  local b=$1 port=$2 conns=$3 rate=$4 pid=$5 label=$6
  local r
  r=$(taskset -c 1 /work/perf-bin/$b/hush-load --server http://127.0.0.1:$port --connections $conns --rate $rate \
      --payload 256 --warmup 5 --duration 20 --json --hushd-pid $pid 2>&1 | grep '^RESULT' | sed 's/^RESULT //')
  echo "$b $label $r" | tee -a $OUT
}
for rep in 1 2; do
  for rate in 1000 2500 5000 7500 10000; do
    for b in before after; do
      pid=$(start $b /tmp/perf-$b 0 ${PORT[$b]})
      load $b ${PORT[$b]} 1000 $rate $pid "rep$rep-rate$rate"
      kill $pid; wait $pid 2>/dev/null; sleep 1
    done
  done
done
# idle memory at 10,000 connections: users created on a first node run, then a fresh start
for b in before after; do
  pid=$(start $b /tmp/perf-idle-$b 1 ${IDLEPORT[$b]})
  load $b ${IDLEPORT[$b]} 10000 0 $pid idle-setup
  kill $pid; wait $pid 2>/dev/null; sleep 1
  for rep in 1 2; do
    pid=$(start $b /tmp/perf-idle-$b 0 ${IDLEPORT[$b]})
    load $b ${IDLEPORT[$b]} 10000 0 $pid "idle10k-rep$rep"
    kill $pid; wait $pid 2>/dev/null; sleep 1
  done
done
echo DONE >> $OUT
