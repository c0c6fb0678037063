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
    for b in before after3; do run_one $b 1000 $rate "rep$rep-rate$rate"; done
  done
done
for rep in 1 2; do
  for b in before after3; do run_one $b 10000 0 "idle10k-rep$rep" idle; done
done
echo DONE >> $OUT
