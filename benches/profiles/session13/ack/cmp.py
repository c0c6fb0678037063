import json,collections,sys
d=collections.defaultdict(list)
for l in open(sys.argv[1]):
    r,b,e,j=l.split(' ',3); j=json.loads(j)
    d[(b,e,int(j['offered']))].append((j['p99_ms'],j['receipt_p99_ms'],round(j['hushd_cpu_pct'],1), round(j['hushd_cpu_pct']*10000/j['offered'])))
for k in sorted(d): print(k, d[k])
