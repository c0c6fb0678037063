#!/bin/bash
# run3.sh: before vs after2 near the knee, three interleaved runs each at 4,000 and 5,000 msg/s.
set -u
OUT=/work/perf/results3.txt
: > $OUT
. "$(dirname "$0")/lib.sh"
for rep in 1 2 3; do
  for rate in 4000 5000; do
    for b in before after2; do run_one $b 1000 $rate "rep$rep-rate$rate"; done
  done
done
echo DONE >> $OUT
