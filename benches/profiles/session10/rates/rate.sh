#!/bin/bash
# As run last (rates 6000-12000, one run, output rate-hi-*); the first sweep was the same loop with
# --rates 1000,3000,5000, two runs ("for r in 1 2"), output rate-<build>-<run>.txt.
ulimit -n 20000
TOKENS=/tmp/hush-load-http___127_0_0_1_18700_default_idle.json
for r in 1; do for b in before after3; do
  B=/work/perf-bin/t-$b; D=/tmp/hush-idle-10000-before; [ $b = after3 ] && D=/tmp/hush-idle-10000-after
  taskset -c 0 $B/hushd --listen 127.0.0.1:18700 --data-dir $D --workers 1 > $D.out 2> $D.log &
  pid=$!
  for i in $(seq 1 100); do grep -q "listening on" $D.out 2>/dev/null && break; sleep 0.1; done
  sleep 1
  taskset -c 1 /work/perf-bin/t-after3/hush-load --server http://127.0.0.1:18700 --connections 1000 --rates 6000,8000,10000,12000 \
    --warmup 3 --duration 10 --grace 2 --user-prefix idle --hushd-pid $pid --token-cache $TOKENS > /tmp/s10/rate-hi-$b-$r.txt 2>&1
  kill $pid; while kill -0 $pid 2>/dev/null; do sleep 0.2; done; sleep 1
  echo "== $b run $r"; grep -E "^RESULT|rate .*p99|sweep" /tmp/s10/rate-hi-$b-$r.txt | tail -8
done; done
