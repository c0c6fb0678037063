#!/usr/bin/env python3
"""CPU of hushd and hush-load during the connect phase of a profile-connect-revoke.sh run.
Args: <run>.cpu <run>.upat <run>.load. The window is [up - D, up], D = hush-load's
"handshake + token auth" time, up = when its "connections up" line appeared."""
import re
import sys

cpu, upat, load = sys.argv[1:4]
rows = [tuple(map(float, l.split())) for l in open(cpu) if len(l.split()) == 3 and "-1" not in l.split()]
up = float(open(upat).readline())
d = float(re.search(r"handshake \+ token auth: ([0-9.]+) s", open(load).read()).group(1))
t0 = up - d
def at(t):  # last sample at or before t
    best = rows[0]
    for r in rows:
        if r[0] <= t:
            best = r
    return best
a, b = at(t0), at(up)
wall = b[0] - a[0]
load_ms, hushd_ms = (b[1] - a[1]) * 10, (b[2] - a[2]) * 10
print(f"connect phase {d:.2f} s (samples span {wall:.2f} s): hushd CPU {hushd_ms/1e3:.2f} s ({100*hushd_ms/1e3/wall:.0f}% of its core), "
      f"hush-load CPU {load_ms/1e3:.2f} s ({100*load_ms/1e3/wall:.0f}%); per connection: hushd {hushd_ms/10:.0f} us, hush-load {load_ms/10:.0f} us")
