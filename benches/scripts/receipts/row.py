"""One line per hush-load run of run.sh: "run rate mode {json}" on stdin."""
import json
import sys

r, rate, mode, js = sys.stdin.read().split(" ", 3)
v = json.loads(js)


def f(x):
    return "-" if x is None else "%.2f" % x


print("run {} rate {} {:8} msg p50 {} p99 {} ms | receipt p50 {} p99 {} ms | accepted p99 {} ms | "
      "sent {} accepted {} delivered {} receipts {} refused {} undelivered {} disconnects {}".format(
          r, rate, mode, f(v["p50_ms"]), f(v["p99_ms"]), f(v["receipt_p50_ms"]), f(v["receipt_p99_ms"]),
          f(v["accepted_p99_ms"]), v["sent"], v["accepted"], v["delivered"], v["receipts_delivered"],
          v["refused"], v["undelivered"], v["disconnects"]))
