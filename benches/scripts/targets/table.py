#!/usr/bin/env python3
"""Reads run.sh's RESULT lines ("round build row {json}") and prints, per row and build, the
p99 of every offered rate in each round, its median over the rounds (a rate a round did not
reach, because the sweep stopped below it, counts as failed), and the highest rate whose median
p99 and every lower rate's median p99 are under 50 ms with no error (for receipts rows: message
and receipt). Also hushd's CPU per message where hush-load reported it.
Usage: table.py /tmp/targets.results"""
import collections
import json
import math
import statistics
import sys

runs = collections.defaultdict(dict)  # (row, build) -> {round: {rate: result}}
for line in open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/targets.results"):
    rnd, build, row, j = line.split(" ", 3)
    j = json.loads(j)
    runs[(row, build)].setdefault(int(rnd), {})[j["offered"]] = j


def errors(j):
    return j["refused"] + j["unanswered"] + j["undelivered"] + j["disconnects"] + j.get("write_errors", 0)


def p99(j):
    """The figure a rate is judged by: the message's p99, or the larger of message and receipt."""
    if j is None or errors(j):
        return math.inf
    return max(j["p99_ms"], j["receipt_p99_ms"]) if j.get("receipts") else j["p99_ms"]


print("| row | build | p99 per round at each offered rate, ms (median) | sustained rate: highest with this and every lower rate's median p99 < 50 ms |")
print("|---|---|---|---|")
for (row, build), rounds in sorted(runs.items()):
    rates = sorted({r for rr in rounds.values() for r in rr})
    cells, sustained, broken = [], 0, False
    for rate in rates:
        vals = [p99(rounds[k].get(rate)) for k in sorted(rounds)]
        med = statistics.median(vals)
        shown = ", ".join("–" if math.isinf(v) else f"{v:.1f}" for v in vals)
        cells.append(f"{rate:,.0f}: {shown} (**{'–' if math.isinf(med) else f'{med:.1f}'}**)")
        if med < 50 and not broken:
            sustained = rate
        else:
            broken = True
    print(f"| {row} | {build} | {'; '.join(cells)} | **{sustained:,.0f}** |")
print()
print("hushd CPU per delivered message (µs, median over rounds), where reported:")
for (row, build), rounds in sorted(runs.items()):
    out = []
    for rate in sorted({r for rr in rounds.values() for r in rr}):
        us = [
            j["hushd_cpu_pct"] / 100 / j["delivered_per_s"] * 1e6 * (1 if not j.get("receipts") else 0.5)
            for rr in rounds.values()
            if (j := rr.get(rate)) and j.get("hushd_cpu_pct") and j["delivered_per_s"] > 0
        ]
        if us:
            out.append(f"{rate:,.0f}: {statistics.median(us):.0f}")
    if out:
        print(f"- {row} {build} (per send): " + "; ".join(out))
