#!/usr/bin/env python3
"""heaptrack's peak-memory folded stacks (heaptrack_print --flamegraph-cost-type peak -F FILE)
-> bytes per connection by the allocating call site: the innermost two frames that are not the
allocator, std, core, bytes or hashbrown. Usage: heapsum.py FILE CONNECTIONS"""
import collections
import re
import sys

skip = re.compile(r"(^_RNv|alloc::|raw_vec|__rust|__rdl|core::|std::|bytes::|hashbrown|<unknown>|smallvec|malloc|calloc|realloc|\?\?)")
n = int(sys.argv[2])
total = 0
agg = collections.Counter()
for line in open(sys.argv[1]):
    stack, c = line.rstrip().rsplit(" ", 1)
    c = int(c)
    total += c
    frames = [f for f in stack.split(";") if not skip.search(f)]
    key = " <- ".join(re.sub(r"::h[0-9a-f]{16}", "", f)[:100] for f in frames[::-1][:2]) if frames else "(allocator only)"
    agg[key] += c
print(f"peak heap {total / 1e6:.1f} MB over {n} connections: {total / n:,.0f} B per connection")
for k, v in agg.most_common(25):
    print(f"{v / n:8,.0f} B/conn  {v / 1e6:7.2f} MB  {k}")
