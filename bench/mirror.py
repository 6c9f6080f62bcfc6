#!/usr/bin/python3
"""Request-mirroring benchmark: sluice (a route's `mirror`) vs NGINX
(`mirror` + an internal location proxying to a shadow upstream), every
request copied to a second origin, one worker each, one run. HAProxy 2.6
mirrors only through an external SPOE agent (spoa-mirror, not in Debian), so
it is not in this one.

Configs: bench/mirror/*.in, the HTTP/1.1 bench's configs (bench/http/) with
a shadow pool. Each balancer runs twice: "plain" (no mirror) and "mirror"
(every request copied). Balancers on CPU 0; wrk, this script, the origin
and the shadow origin on CPU 1. A balancer's CPU is utime+stime from /proc.

Windows, per balancer and instance, wrk -t1 -c50 keep-alive after a 1 s
warm-up. Reported: req/s, requests per CPU-s and CPU per request of each
instance, the CPU a copy adds per request (mirror - plain), and the copies
the shadow origin counted per request in the mirror window (1.0 when every
request was copied). Every load loop is bounded in time, the whole run has a
watchdog.
Usage: bench/mirror.py [--duration S] [--rounds N] [--only a,b]
Results: printed, and written to bench/results/mirror-<date>.txt.
"""
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import die, log, start_balancer, stop_all  # noqa: E402
import urllib.request  # noqa: E402  (after the path fix: bench/http/ is not the http package)

TPL = os.path.join(HERE, "mirror")
WATCHDOG_S = 290
MIRROR_LINES = {"SLUICE_MIRROR": "mirror: {pool: shadow}", "NGINX_MIRROR": "mirror /_mirror;"}


def shadow_requests(addr):
    with urllib.request.urlopen("http://%s/stats" % addr, timeout=5) as r:
        return json.loads(r.read())["requests"]


def main():
    args, only = benchlib.peer_args(__doc__, "mirror")
    only = [p for p in only if p != "haproxy"]
    if not only:
        die("nothing to do: HAProxy has no built-in mirror to compare")
    bg, t_run = benchlib.peer_start("mirror bench", only,
                                    args.rounds * len(only) * 2 * (args.duration + 3), WATCHDOG_S)
    tmp = tempfile.mkdtemp(prefix="sluice-bench-mirror-")
    benchlib.tmpdirs.append(tmp)
    kinds = ("plain", "mirror")
    res = {p: {k: [] for k in kinds} for p in only}
    lines = []
    try:
        _, ports = benchlib.start_origins(2, tmp, ["--threads", "1", "--mode", "http"])
        shadow = "127.0.0.1:%d" % ports[1]
        bals = {}
        for p in only:
            for k in kinds:
                kw = {n: (v if k == "mirror" else "") for n, v in MIRROR_LINES.items()}
                bals[p, k] = start_balancer(p, TPL, os.path.join(tmp, "%s-%s" % (p, k)), ports[:1],
                                            label="%s-%s" % (p, k), SHADOW=shadow, **kw)
        for rnd in range(args.rounds):
            order = only[rnd % len(only):] + only[:rnd % len(only)]
            for p in order:
                for k in kinds:
                    b = bals[p, k]
                    url = "http://127.0.0.1:%d/" % b.port
                    benchlib.wrk_window(url, 1)          # the warm-up, outside the count
                    time.sleep(0.2)
                    before = shadow_requests(shadow)
                    r = benchlib.measured_wrk(b, url, args.duration, warmup=0)
                    time.sleep(0.2)                      # copies still in flight when wrk stopped
                    r["copies"] = (shadow_requests(shadow) - before - 1) / r["reqs"]
                    res[p][k].append(r)
                    line = "  [round %d] %-7s %-6s %8.0f req/s  %8.1f us CPU/req  %8.0f req/CPU-s  " \
                           "copies/req %.2f  refused %d  errors %d%s" % (
                               rnd + 1, p, k, r["rps"], r["cpu_us"], r["per_cpu"], r["copies"],
                               r["refused"], r["errors"], "  DISTURBED" if r["noisy"] else "")
                    log(line)
                    lines.append(line)
        for (p, k), b in bals.items():
            if b.proc.poll() is not None:
                die("%s (%s) died during the bench" % (p, k))
    finally:
        stop_all()

    head, rows = benchlib.peer_table(res, only, (("plain", "no mirror"), ("mirror", "every request mirrored")),
                                     (("rps", "req/s", "%.0f"), ("per_cpu", "requests per CPU-s", "%.0f"),
                                      ("cpu_us", "CPU us per request", "%.1f")))
    med = {p: {k: statistics.median(r["cpu_us"] for r in res[p][k]) for k in kinds} for p in only}
    added = {p: med[p]["mirror"] - med[p]["plain"] for p in only}
    copies = {p: statistics.median(r["copies"] for r in res[p]["mirror"]) for p in only}
    ratio = ["%.2f" % (added["sluice"] / added["nginx"]) if "nginx" in only and "sluice" in only and
             added["nginx"] > 0 else "-"] if len(head) > len(only) + 1 else []
    rows.append(["CPU us a copy adds per request"] + ["%.1f" % added[p] for p in only] + ratio)
    rows.append(["copies at the shadow per request"] + ["%.2f" % copies[p] for p in only] +
                (["-"] if ratio else []))
    benchlib.peer_report("mirror", "mirror", t_run, bg, args, [
        "balancers pinned to CPU 0 (one worker each); wrk -t1 -c50 keep-alive, the origin and the shadow origin on CPU 1",
        "configs: bench/mirror/*.in (the HTTP bench's plus a shadow pool; 'mirror' copies every request)",
    ], head, rows, lines)


if __name__ == "__main__":
    benchlib.run_main(main)
