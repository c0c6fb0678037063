# Shared helpers of the issue-15 bench scripts (sourced). hushd runs pinned to CPU 0 with one worker.
start() { # bindir data port -> PID (once the node listens)
  taskset -c 0 "$1/hushd" --listen 127.0.0.1:$3 --data-dir "$2" --workers 1 > "$2.out" 2> "$2.log" &
  local pid=$!
  for i in $(seq 1 100); do grep -q "listening on" "$2.out" 2>/dev/null && break; sleep 0.1; done
  echo $pid
}
stop() { kill "$1" 2>/dev/null; while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; sleep 1; }
# utime+stime of a PID in clock ticks of 10 ms.
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo -1; }
up() { # wait until FILE has PATTERN (or PID is gone)
  until grep -q "$2" "$1" 2>/dev/null; do kill -0 "$3" 2>/dev/null || return 1; sleep 0.02; done
}
