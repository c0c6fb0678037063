#!/bin/bash
cd /work/main
export BEFORE=/work/perf-bin/t-1e4 AFTER=/work/perf-bin/t-main
date -u +"start %T" > /tmp/s14/times.txt
OUT=/tmp/s14/targets.results PLAIN=1000,4000,6000,8000,10000,12000,14000 RECEIPTS_RATES=1000,2000,3000,4000,5000,6000,8000 \
  benches/scripts/targets/run.sh 3 > /tmp/s14/run.txt 2>&1
date -u +"run.sh done %T" >> /tmp/s14/times.txt
OUT=/tmp/s14/others.txt SECTIONS="revoke idle" IDLE_DATA=/tmp/hush-idle-19000 benches/scripts/targets/others.sh 3 > /tmp/s14/others.log 2>&1
date -u +"others done %T" >> /tmp/s14/times.txt
RUNS=3 GROUP_DATA=/tmp/tg-group benches/scripts/targets/group-ba.sh /tmp/s14/group > /tmp/s14/group.log 2>&1
date -u +"group done %T" >> /tmp/s14/times.txt
