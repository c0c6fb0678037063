#!/usr/bin/env python3
"""perf script output -> folded stacks ("root;...;leaf count" per line), the text form of a
flame graph (as Brendan Gregg's stackcollapse-perf.pl makes it). Stacks below 0.05% of all
samples are dropped so the file stays small (COLLAPSE_MIN_SHARE=0 keeps every stack); the dropped
share is printed as one line."""
import collections
import os
import re
import sys

counts = collections.Counter()
stack, comm = [], None
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        if comm is not None:
            counts[";".join([comm] + stack[::-1])] += 1
        stack, comm = [], None
        continue
    if comm is None and not line.startswith((" ", "\t")):
        comm = line.split()[0]
        continue
    m = re.match(r"\s*[0-9a-f]+\s+(.+?)\s+\((.*)\)$", line)
    if m:
        sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
        if sym == "[unknown]":
            sym = "[" + m.group(2).rsplit("/", 1)[-1] + "]"
        stack.append(sym.replace(";", ":"))
if comm is not None:
    counts[";".join([comm] + stack[::-1])] += 1
total = sum(counts.values()) or 1
dropped = 0
for s, c in counts.most_common():
    if c < float(os.environ.get("COLLAPSE_MIN_SHARE", "0.0005")) * total:
        dropped += c
        continue
    print(f"{s} {c}")
print(f"[stacks under 0.05% each];[dropped] {dropped}")
