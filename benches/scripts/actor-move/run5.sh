#!/bin/bash
# run5.sh: before against after3 at 10,000 msg/s, three interleaved runs.
set -u
OUT=/work/perf/results5.txt
: > $OUT
. "$(dirname "$0")/lib.sh"
for rep in 1 2 3; do
  for b in before after3; do run_one $b 1000 10000 "rep$rep-rate10000"; done
done
echo DONE >> $OUT
