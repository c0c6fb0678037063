#!/usr/bin/env python3
"""Two /metrics scrapes (before, after) -> per histogram series, the count and the p50 / p99 /
p99.9 upper bucket bounds of what was observed between them (buckets double from 50 µs, so a
figure is "at most this"). Usage: histq.py BEFORE.txt AFTER.txt"""
import collections
import re
import sys

line_re = re.compile(r'^(\w+)_bucket\{(.*)\} (\S+)')


def read(path):
    out = collections.defaultdict(dict)  # (name, labels without le) -> {le: count}
    for line in open(path):
        m = line_re.match(line)
        if not m:
            continue
        name, labels, v = m.groups()
        le = re.search(r'le="([^"]+)"', labels).group(1)
        rest = re.sub(r',?le="[^"]+"', "", labels).strip(",")
        out[(name, rest)][float(le)] = float(v)
    return out


a, b = read(sys.argv[1]), read(sys.argv[2])
for key in sorted(b):
    buckets = sorted(b[key])
    delta = [(le, b[key][le] - a.get(key, {}).get(le, 0)) for le in buckets]
    total = delta[-1][1]
    if total <= 0:
        continue

    def q(p):
        for le, c in delta:
            if c >= p * total:
                return le
        return float("inf")

    fmt = lambda s: f"{s * 1000:.2f} ms" if s != float("inf") else "+Inf"
    print(f"{key[0]}{{{key[1]}}}: n={total:.0f}  p50 <= {fmt(q(0.5))}  p99 <= {fmt(q(0.99))}  p99.9 <= {fmt(q(0.999))}")
