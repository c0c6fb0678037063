# Shared by run2.sh and run3.sh: start a node on an existing data folder, run one hush-load.
export HUSH_ADMIN_PASSWORD=bench-admin-password-1
load() { # bin port conns rate pid label
  local r
  r=$(taskset -c 1 /work/perf-bin/$1/hush-load --server http://127.0.0.1:$2 --connections $3 --rate $4 \
      --payload 256 --warmup 5 --duration 20 --json --hushd-pid $5 2>&1 | grep '^RESULT' | sed 's/^RESULT //')
  echo "$1 $6 $r" | tee -a $OUT
}
start() { # bin data port
  taskset -c 0 /work/perf-bin/$1/hushd --listen 127.0.0.1:$3 --data-dir $2 --workers 1 > $2.out 2> $2.log &
  local pid=$!; for i in $(seq 1 100); do grep -q "listening on" $2.out 2>/dev/null && break; sleep 0.1; done; echo $pid
}
run_one() { # build conns rate label [idle]: one run on that build's data folder and port
  local d port
  case "$1${5:-}" in
    before) d=/tmp/perf-before; port=18610;;
    beforeidle) d=/tmp/perf-idle-before; port=18611;;
    *idle) d=/tmp/perf-idle-after; port=18621;;
    *) d=/tmp/perf-after; port=18620;;
  esac
  local pid; pid=$(start $1 $d $port)
  load $1 $port $2 $3 $pid "$4"
  kill $pid; wait $pid 2>/dev/null; sleep 1
}
