#!/usr/bin/python3
"""Pool the per-window lines of several bench/http.py results files.

One run's medians move with the host (docs/benchmarks.md, "Session 8"), so
this reads every window of the files given and prints, per test and
balancer, the median requests per CPU-second over all of them and the
ratios to HAProxy and NGINX.

Usage: bench/http_pool.py bench/results/http-*.txt
Stdlib only; reads files, starts nothing.
"""
import argparse
import collections
import re
import statistics

LINE = re.compile(r"\s+\[round \d+\] (keepalive|close)( capped)? +(\S+) +\d+ req/s +(\d+) req/CPU-s")
TESTS = ("keepalive", "close", "keepalive capped", "close capped")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    per = collections.defaultdict(list)
    for path in args.files:
        with open(path) as f:
            for line in f:
                m = LINE.match(line)
                if not m or "DISTURBED" in line:
                    continue
                test, who = m.group(1) + (m.group(2) or ""), m.group(3)
                per[(test, who)].append(int(m.group(4)))
    print("%-17s %-12s %7s %9s %9s %9s" % ("test", "balancer", "windows", "median", "/haproxy", "/nginx"))
    for test in TESTS:
        ref = {p: statistics.median(per[(test, p)]) for p in ("haproxy", "nginx") if per.get((test, p))}
        for who in sorted({w for t, w in per if t == test}):
            v = per[(test, who)]
            med = statistics.median(v)
            print("%-17s %-12s %7d %9.0f %9s %9s" % (
                test, who, len(v), med,
                "%.2f" % (med / ref["haproxy"]) if "haproxy" in ref else "-",
                "%.2f" % (med / ref["nginx"]) if "nginx" in ref else "-"))


if __name__ == "__main__":
    main()
