#!/bin/bash
# run5.sh: before against after3 at 10,000 msg/s, three interleaved runs.
set -u
OUT=/work/perf/results5.txt
: > $OUT
. "$(dirname "$0")/lib.sh"
for rep in 1 2 3; do
  for b in before after3; do
    case $b in before) d=/tmp/perf-before; port=18610;; *) d=/tmp/perf-after; port=18620;; esac
    pid=$(start $b $d $port)
    load $b $port 1000 10000 $pid "rep$rep-rate10000"
    kill $pid; wait $pid 2>/dev/null; sleep 1
  done
done
echo DONE >> $OUT
