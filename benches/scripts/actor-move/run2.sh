#!/bin/bash
# run2.sh: the boxed-messages build (after2) on the same data folders and ports as "after",
# interleaved with "before" once more at 2,500 and 5,000 msg/s; idle 10k for after2.
set -u
OUT=/work/perf/results2.txt
: > $OUT
. "$(dirname "$0")/lib.sh"
for rep in 1 2; do
  for rate in 2500 5000; do
    for b in before after2; do run_one $b 1000 $rate "rep$rep-rate$rate"; done
  done
done
for rep in 1 2; do run_one after2 10000 0 "idle10k-rep$rep" idle; done
echo DONE >> $OUT
