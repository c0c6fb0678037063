#!/usr/bin/env python3
"""Table of plain-ba.sh's results: p99 per round at each rate (median in bold), and the sustained
rate (the highest whose median p99 and every lower rate's are under 50 ms with no error; a rate a
round did not reach counts as failed). Usage: plain_table.py OUTDIR/plain.results"""
import collections, json, statistics, sys

rows = collections.defaultdict(dict)  # (build, enc) -> rate -> {round: p99 or None}
rounds = set()
for line in open(sys.argv[1]):
    r, b, enc, js = line.split(" ", 3)
    d = json.loads(js)
    bad = d["refused"] or d["unanswered"] or d["undelivered"] or d["disconnects"] or d["write_errors"]
    rows[(b, enc)].setdefault(int(d["offered"]), {})[r] = None if bad else d["p99_ms"]
    rounds.add(r)
print("| build, encoding | p99 per round at each offered rate, ms (median) | sustained rate | p99 at 1,000 msg/s (median) |")
print("|---|---|---|---|")
for (b, enc), rates in sorted(rows.items()):
    cells, sustained, ok, at1k = [], 0, True, "–"
    for rate in sorted(rates):
        vals = [rates[rate].get(r) for r in sorted(rounds)]
        fail = [float("inf") if v is None else v for v in vals]
        med = statistics.median(fail)
        shown = ", ".join("–" if v is None else f"{v:.1f}" for v in vals)
        medtxt = "–" if med == float("inf") else f"{med:.1f}"
        cells.append(f"{rate:,}: {shown} (**{medtxt}**)")
        if rate == 1000:
            at1k = medtxt + " ms"
        if ok and med < 50:
            sustained = rate
        else:
            ok = False
    print(f"| {b}, {enc} | {'; '.join(cells)} | **{sustained:,}** | {at1k} |")
