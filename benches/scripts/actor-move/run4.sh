#!/bin/bash
# run4.sh: before (2a54590, actix) against after3 (97ac6e5: ractor, boxed messages, and the send
# path without the sender's key read), interleaved, three runs each at 1,000 to 7,000 msg/s,
# then 10,000 idle connections twice each. Binaries in /work/perf-bin/{before,after3}.
set -u
OUT=/work/perf/results4.txt
: > $OUT
. "$(dirname "$0")/lib.sh"
for rep in 1 2 3; do
  for rate in 1000 4000 5000 6000 7000; do
    for b in before after3; do
      case $b in before) d=/tmp/perf-before; port=18610;; *) d=/tmp/perf-after; port=18620;; esac
      pid=$(start $b $d $port)
      load $b $port 1000 $rate $pid "rep$rep-rate$rate"
      kill $pid; wait $pid 2>/dev/null; sleep 1
    done
  done
done
for rep in 1 2; do
  for b in before after3; do
    case $b in before) d=/tmp/perf-idle-before; port=18611;; *) d=/tmp/perf-idle-after; port=18621;; esac
    pid=$(start $b $d $port)
    load $b $port 10000 0 $pid "idle10k-rep$rep"
    kill $pid; wait $pid 2>/dev/null; sleep 1
  done
done
echo DONE >> $OUT
