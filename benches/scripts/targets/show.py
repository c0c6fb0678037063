#!/usr/bin/env python3
"""One line per RESULT line of run.sh ("round build row {json}") on stdin, for the log."""
import json
import sys

for line in sys.stdin:
    rnd, build, row, j = line.split(" ", 3)
    j = json.loads(j)
    errors = j["refused"] + j["unanswered"] + j["undelivered"] + j["disconnects"] + j["write_errors"]
    print(
        f"{rnd} {build:6} {row:18} {j['offered']:>6.0f} msg/s  p50 {j['p50_ms']:8.2f}  p99 {j['p99_ms']:9.2f}"
        f"  receipt p99 {j.get('receipt_p99_ms') or 0:8.2f}  errors {errors}",
        flush=True,
    )
