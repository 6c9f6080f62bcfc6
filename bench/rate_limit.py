#!/usr/bin/python3
"""Rate-limit benchmark: sluice (rate_limit) vs NGINX (limit_req) vs HAProxy
(stick table), one worker each, in front of the same origin, one run.

Configs: bench/rate_limit/*.in, which are the HTTP/1.1 bench's configs
(bench/http/) plus a limit per client address. Balancers on CPU 0; wrk, this
script and the origin on CPU 1. A balancer's CPU is utime+stime from /proc.

Windows, per balancer (wrk -t1 -c50 keep-alive, after a 1 s warm-up):
  off    no limit (the HTTP bench's config)
  on     a limit far above the load (10,000,000/s): what checking costs
  over   50 connections from one address flat out against 1,000/s with
         burst 100: nearly every request is refused. How many got through
         against the limit's promise, and what a refusal costs.

Reported: CPU µs per request off and on (the difference is the limit's
cost), requests per CPU-s with the limit on (the ratios), requests per
CPU-s when over the limit (refusing is the work then), and requests let
through per second against the limit.

Every load loop is bounded in time, the whole run has a watchdog.
Stdlib only. Usage: bench/rate_limit.py [--duration S] [--rounds N] [--only a,b]
Results: printed, and written to bench/results/rate-limit-<date>.txt.
"""
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import die, log, start_balancer, stop_all  # noqa: E402

TPL_OFF = os.path.join(HERE, "http")
TPL_ON = os.path.join(HERE, "rate_limit")
WATCHDOG_S = 290
HIGH_RATE = 10000000          # "on": never reached
OVER_RATE, OVER_BURST = 1000, 100


def main():
    args, only = benchlib.peer_args(__doc__, "rate-limit")
    bg, t_run = benchlib.peer_start("rate-limit bench", only, args.rounds * len(only) * 3 * (args.duration + 3), WATCHDOG_S, ())
    tmp = tempfile.mkdtemp(prefix="sluice-bench-rl-")
    benchlib.tmpdirs.append(tmp)
    res = {p: {"off": [], "on": [], "over": []} for p in only}
    lines = []
    try:
        names, ports = benchlib.start_origins(1, tmp, ["--threads", "1", "--mode", "http"])
        bals = {}
        for p in only:
            bals[(p, "off")] = start_balancer(p, TPL_OFF, os.path.join(tmp, p + "-off"), ports,
                                              p + "-off")
            bals[(p, "on")] = start_balancer(p, TPL_ON, os.path.join(tmp, p + "-on"), ports,
                                             p + "-on", RATE=HIGH_RATE, BURST=100)
            bals[(p, "over")] = start_balancer(p, TPL_ON, os.path.join(tmp, p + "-over"), ports,
                                               p + "-over", RATE=OVER_RATE, BURST=OVER_BURST)
        for b in bals.values():
            benchlib.curl_reaches(b, names, "proxy")
        for rnd in range(args.rounds):
            order = only[rnd % len(only):] + only[:rnd % len(only)]
            for p in order:
                for mode in ("off", "on", "over"):
                    b = bals[(p, mode)]
                    # After the warm-up, the limit's tokens come back.
                    r = benchlib.measured_wrk(b, "http://127.0.0.1:%d/" % b.port, args.duration,
                                              settle=1.2)
                    res[p][mode].append(r)
                    line = ("  [round %d] %-7s %-4s %7d requests %7d refused  %6.1f us CPU/req  "
                            "%7.0f req/CPU-s  errors %d%s" % (
                                rnd + 1, p, mode, r["reqs"], r["refused"], r["cpu_us"],
                                r["per_cpu"], r["errors"], "  DISTURBED" if r["noisy"] else ""))
                    log(line)
                    lines.append(line)
        for (p, mode), b in bals.items():
            if b.proc.poll() is not None:
                die("%s (%s) died during the bench" % (p, mode))
    finally:
        stop_all()

    def med(p, mode, key):
        return statistics.median(r[key] for r in res[p][mode])

    def ratio(a, b):
        return "%.2f" % (a / b) if b else "-"

    rows = []
    head = ["metric"] + only + ["sluice/haproxy" if "haproxy" in only else "",
                                "sluice/nginx" if "nginx" in only else ""]
    head = [h for h in head if h]

    def row(name, key, mode, fmt, ratios=True, fn=None):
        vals = {p: (fn(p) if fn else med(p, mode, key)) for p in only}
        cells = [name] + [fmt % vals[p] for p in only]
        if "sluice" in only:
            for other in ("haproxy", "nginx"):
                if other in only:
                    cells.append(ratio(vals["sluice"], vals[other]) if ratios else "-")
        rows.append(cells)
    row("CPU us per request, no limit", "cpu_us", "off", "%.1f", ratios=False)
    row("CPU us per request, limit never reached", "cpu_us", "on", "%.1f", ratios=False)
    row("cost of checking the limit, us per request", None, None, "%.2f", ratios=False,
        fn=lambda p: med(p, "on", "cpu_us") - med(p, "off", "cpu_us"))
    row("requests per CPU-s, limit never reached", "per_cpu", "on", "%.0f")
    row("requests per CPU-s, over the limit (mostly refused)", "per_cpu", "over", "%.0f")
    row("over the limit: let through per second", None, None, "%.0f", ratios=False,
        fn=lambda p: statistics.median(r["passed"] / r["secs"] for r in res[p]["over"]))
    expect = OVER_RATE
    benchlib.peer_report("rate-limit", "rate-limit", t_run, bg, args, [
        "balancers pinned to CPU 0 (one worker each); wrk -t1 -c50 keep-alive and 1 sluice-origin on CPU 1",
        "configs: bench/rate_limit/*.in (the HTTP bench's plus a per-address limit); 'no limit' = bench/http/*.in",
        "limit never reached: %d/s burst 100; over the limit: %d/s burst %d, all 50 connections from 127.0.0.1"
        % (HIGH_RATE, OVER_RATE, OVER_BURST),
        "haproxy: stick table, gpc0_rate(1s) of the requests let through, deny 429 at >= rate (no burst)",
        "nginx: limit_req burst=N nodelay, status 429, refusals not logged",
    ], head, rows, lines,
        extra="over the limit, the promise: %d per second (+ burst %d once for sluice and nginx)\n\n" % (
            expect, OVER_BURST))


if __name__ == "__main__":
    benchlib.run_main(main)
