#!/bin/bash
# run2.sh: the boxed-messages build (after2) on the same data folders and ports as "after",
# interleaved with "before" once more at 2,500 and 5,000 msg/s; idle 10k for after2.
set -u
OUT=/work/perf/results2.txt
: > $OUT
. "$(dirname "$0")/lib.sh"
for rep in 1 2; do
  for rate in 2500 5000; do
    for b in before after2; do
      case $b in before) d=/tmp/perf-before; port=18610;; *) d=/tmp/perf-after; port=18620;; esac
      pid=$(start $b $d $port)
      load $b $port 1000 $rate $pid "rep$rep-rate$rate"
      kill $pid; wait $pid 2>/dev/null; sleep 1
    done
  done
done
for rep in 1 2; do
  pid=$(start after2 /tmp/perf-idle-after 18621)
  load after2 18621 10000 0 $pid "idle10k-rep$rep"
  kill $pid; wait $pid 2>/dev/null; sleep 1
done
echo DONE >> $OUT
