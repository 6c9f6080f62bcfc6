#!/usr/bin/python3
"""Pool the per-window lines of several bench/http.py results files.

One run's medians move with the host (docs/benchmarks.md, "Session 8"), so
this reads every window of the files given and prints, per test and
balancer, the median requests per CPU-second over all of them and the
ratios to HAProxy and NGINX; then the paired view: sluice's ratio to each
in every round (windows of one round run within seconds of each other, so
a host that speeds up or slows down between rounds cancels out), as the
median and quartiles of those per-round ratios.

Usage: bench/http_pool.py bench/results/http-*.txt
Stdlib only; reads files, starts nothing.
"""
import argparse
import collections
import re
import statistics

LINE = re.compile(r"\s+\[round (\d+)\] (keepalive|close)( capped)? +(\S+) +\d+ req/s +(\d+) req/CPU-s")
TESTS = ("keepalive", "close", "keepalive capped", "close capped")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    per = collections.defaultdict(list)
    rounds = collections.defaultdict(dict)    # (file, round, test) -> {balancer: req/CPU-s}
    for path in args.files:
        with open(path) as f:
            for line in f:
                m = LINE.match(line)
                if not m or "DISTURBED" in line:
                    continue
                test, who = m.group(2) + (m.group(3) or ""), m.group(4)
                per[(test, who)].append(int(m.group(5)))
                rounds[(path, m.group(1), test)][who] = int(m.group(5))   # a retried window: the last
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
    print("\npaired: sluice / other in the same round")
    print("%-17s %-8s %6s %7s %12s %11s" % ("test", "other", "rounds", "median", "quartiles", "min-max"))
    for test in TESTS:
        for other in ("haproxy", "nginx"):
            r = [v["sluice"] / v[other] for (_, _, t), v in rounds.items()
                 if t == test and "sluice" in v and other in v]
            if len(r) >= 2:
                q = statistics.quantiles(r, n=4)
                print("%-17s %-8s %6d %7.2f %5.2f-%-6.2f %5.2f-%.2f" % (
                    test, other, len(r), statistics.median(r), q[0], q[2], min(r), max(r)))


if __name__ == "__main__":
    main()
