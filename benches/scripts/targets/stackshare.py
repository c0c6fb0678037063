#!/usr/bin/env python3
"""Reads folded stacks (collapse.py's output) and prints:
  - the self-time table (leaf frame, share of all samples), top N;
  - for each PATTERN given (a regex on frame names), the inclusive share: samples with a frame
    matching it anywhere in the stack (each sample counted once).
Usage: stackshare.py FILE.folded [N] [LABEL=REGEX ...]"""
import collections
import re
import sys

path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 30
pats = [a.split("=", 1) for a in sys.argv[2:] if "=" in a]
stacks = []
for line in open(path):
    s, c = line.rstrip("\n").rsplit(" ", 1)
    stacks.append((s.split(";"), int(c)))
total = sum(c for _, c in stacks)
leaf = collections.Counter()
threads = collections.Counter()
for frames, c in stacks:
    leaf[frames[-1]] += c
    threads[frames[0]] += c
print(f"{total} samples")
print("by thread (comm):", ", ".join(f"{t} {100*c/total:.1f}%" for t, c in threads.most_common(6)))
print("\ninclusive share:")
for label, rx in pats:
    r = re.compile(rx)
    c = sum(c for frames, c in stacks if any(r.search(f) for f in frames))
    print(f"  {100*c/total:5.1f}%  {label}  ({rx})")
print(f"\nself time, top {n}:")
for sym, c in leaf.most_common(n):
    print(f"  {100*c/total:5.1f}%  {sym[:140]}")
