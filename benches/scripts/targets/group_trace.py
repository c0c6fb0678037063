#!/usr/bin/env python3
"""Splits a trace of hushd's socket syscalls during hush-group (group-trace.sh: `perf script -F
tid,time,event` of sys_enter_recvfrom / sendto / writev) into rounds (a gap of GAP_MS, default 8,
with no syscall separates two rounds: hush-group pauses 20 ms between them), and prints per round
the node's fan-out time: its first syscall (reading the sender's GroupSend) to its last send
(the last member's Deliver), with the count of sends and reads in between; then quantiles.
Usage: group_trace.py TRACE"""
import os
import re
import sys

GAP = float(os.environ.get("GAP_MS", "8")) / 1e3
line_re = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+syscalls:sys_enter_(\w+)")
events = []
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if m:
        events.append((float(m.group(2)), m.group(3)))
events.sort()
rounds, cur = [], []
for ev in events:
    if cur and ev[0] - cur[-1][0] > GAP:
        rounds.append(cur)
        cur = []
    cur.append(ev)
if cur:
    rounds.append(cur)
fan, span, sends, reads = [], [], [], []
for r in rounds:
    s = [t for t, e in r if e in ("sendto", "writev")]
    if len(s) < 900:  # not a group round (setup traffic, a partial round at the edges)
        continue
    fan.append((s[-1] - r[0][0]) * 1e3)
    span.append((r[-1][0] - r[0][0]) * 1e3)
    sends.append(len(s))
    reads.append(sum(1 for _, e in r if e == "recvfrom"))


def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))] if v else float("nan")


print(f"{len(fan)} rounds of {len(rounds)} bursts")
if fan:
    print(f"node fan-out (GroupSend read -> last Deliver sent): p50 {q(fan, .5):.2f} ms  p99 {q(fan, .99):.2f} ms  max {max(fan):.2f} ms")
    print(f"node busy with the round (-> its last syscall, acks included): p50 {q(span, .5):.2f} ms  p99 {q(span, .99):.2f} ms")
    print(f"sends per round: median {q(sends, .5)}; reads per round: median {q(reads, .5)}")
