#!/usr/bin/python3
"""Multi-core scaling: sluice (workers N) vs HAProxy (nbthread N) vs NGINX
(worker_processes N), HTTP/1.1, in front of the same origins, one run.

The other HTTP benchmarks pin each balancer to one CPU. This one gives each
balancer CPUs 0..N-1 for N in --workers (default: 1, 2, 4, ... while 3N
CPUs fit on the machine, since the client and the origins need about twice
the balancer's CPU to keep it busy), and splits the remaining CPUs between
wrk (-t = its CPUs) and three sluice-origin processes (--threads = their
CPUs). Configs: bench/scaling/*.in, the HTTP bench's with N workers; NGINX
listens with reuseport as sluice does (one listening socket per worker);
HAProxy 2.6 threads share one socket.

Windows, for each N and balancer: keep-alive (wrk, 64 connections per
balancer CPU) and Connection: close. Reported per N: req/s, requests per
balancer CPU-s, and scaling = req/s at N / (N x req/s at 1). When the client
side cannot keep N balancer CPUs busy, req/s stops growing while requests per
CPU-s still compares the balancers: the table shows how busy each balancer
was (balancer CPU-s per second / N).

On a 2-CPU machine only N = 1 fits, which the HTTP benchmark already
measures; the figures in docs/benchmarks.md come from a 16-CPU machine.
Every load loop is bounded in time, the whole run has a watchdog.
Stdlib only. Usage: bench/scaling.py [--workers 1,2,4] [--duration S] [--rounds N] [--only a,b]
Results: printed, and written to bench/results/scaling-<date>.txt.
"""
import datetime
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import die, log, render_table, start_balancer, stop_all  # noqa: E402

TPL = os.path.join(HERE, "scaling")
WATCHDOG_S = 590
CONNS_PER_CPU = 64
ORIGINS = 3


def cpu_list(first, count):
    return "%d-%d" % (first, first + count - 1) if count > 1 else str(first)


def default_workers():
    ncpu = os.cpu_count()
    out, n = [], 1
    while 3 * n <= ncpu:
        out.append(n)
        n *= 2
    return ",".join(str(n) for n in out) or "1"


def main():
    def extra(ap):
        ap.add_argument("--workers", default=default_workers(),
                        help="balancer CPU counts to measure (default here: %s)" % default_workers())
    args, only = benchlib.peer_args(__doc__, "scaling", extra)
    counts = sorted({int(x) for x in args.workers.split(",")})
    ncpu = os.cpu_count()
    if counts[0] < 1 or counts[-1] + 1 > ncpu:
        die("--workers %s: each N needs N CPUs for the balancer and more for the client side"
            " (this machine has %d)" % (args.workers, ncpu))
    windows = len(counts) * len(only) * 2 * args.rounds
    bg, t_run = benchlib.peer_start("scaling bench", only, windows * (args.duration + 4), WATCHDOG_S)
    tmp = tempfile.mkdtemp(prefix="sluice-bench-scaling-")
    benchlib.tmpdirs.append(tmp)
    res = {(n, p, t): [] for n in counts for p in only for t in ("keepalive", "close")}
    lines, layout = [], []
    try:
        for n in counts:
            rest = ncpu - n          # the client side's CPUs; with one, wrk and the origins share it
            n_origin = max(1, rest // 2)
            n_wrk = max(1, rest - n_origin)
            bal_cpus, origin_cpus = cpu_list(0, n), cpu_list(n, n_origin)
            wrk_cpus = cpu_list(ncpu - n_wrk, n_wrk)
            layout.append("N=%d: balancer CPUs %s; %d sluice-origin --threads %d on CPUs %s; wrk -t%d -c%d on CPUs %s"
                          % (n, bal_cpus, ORIGINS, n_origin, origin_cpus, n_wrk, CONNS_PER_CPU * n, wrk_cpus))
            log(layout[-1])
            os.sched_setaffinity(0, {ncpu - 1})     # this script: off the balancer's CPUs
            ntmp = os.path.join(tmp, "n%d" % n)
            os.makedirs(ntmp)
            names, ports = benchlib.start_origins(ORIGINS, ntmp, ["--threads", str(n_origin), "--mode", "http"],
                                                  cpus=origin_cpus)
            bals = {p: start_balancer(p, TPL, os.path.join(ntmp, p), ports, cpus=bal_cpus, WORKERS=n)
                    for p in only}
            for b in bals.values():
                benchlib.curl_reaches(b, names, "proxy", n)
            wrk = dict(conns=CONNS_PER_CPU * n, threads=n_wrk, cpus=wrk_cpus)
            for rnd in range(args.rounds):
                order = only[rnd % len(only):] + only[:rnd % len(only)]
                for t, headers in (("keepalive", ()), ("close", ("Connection: close",))):
                    for p in order:
                        b = bals[p]
                        r = benchlib.measured_wrk(b, "http://127.0.0.1:%d/" % b.port, args.duration,
                                                  headers, **wrk)
                        r["busy"] = r["cpu"] / r["secs"] / n
                        res[(n, p, t)].append(r)
                        line = ("  [N=%d round %d] %-9s %-7s %8.0f req/s  %8.0f req/CPU-s  balancer busy %3.0f%%"
                                "  refused %d  errors %d" % (n, rnd + 1, t, p, r["rps"], r["per_cpu"],
                                                             100 * r["busy"], r["refused"], r["errors"]))
                        log(line)
                        lines.append(line)
            for p, b in bals.items():
                if b.proc.poll() is not None:
                    die("%s died during the bench (N=%d)" % (p, n))
            stop_all()
    finally:
        stop_all()

    def med(n, p, t, key):
        return statistics.median(r[key] for r in res[(n, p, t)])

    peers = [o for o in ("haproxy", "nginx") if o in only and "sluice" in only]
    tables = []
    for t, label in (("keepalive", "keep-alive"), ("close", "Connection: close")):
        head = [label] + only + ["sluice/" + o for o in peers]
        rows = []
        for n in counts:
            base = {p: med(counts[0], p, t, "rps") / counts[0] for p in only}
            for key, what, fmt, ratios in (("rps", "req/s", "%.0f", True),
                                           ("per_cpu", "requests per balancer CPU-s", "%.0f", True),
                                           ("scaling", "scaling", "%.2f", False),
                                           ("busy", "balancer busy", "%.2f", False)):
                if key == "scaling":
                    vals = {p: med(n, p, t, "rps") / (n * base[p]) for p in only}
                else:
                    vals = {p: med(n, p, t, key) for p in only}
                rows.append(["N=%d %s" % (n, what)] + [fmt % vals[p] for p in only] +
                            ["%.2f" % (vals["sluice"] / vals[o]) if ratios and vals[o] else "-" for o in peers])
        tables.append(render_table(head, rows))
    notes = [
        "sluice multi-core scaling bench, %s (run took %.0fs)" % (
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), time.monotonic() - t_run),
        benchlib.host_note(), benchlib.versions_note(),
        "background load before the run: %s" % benchlib.fmt_load(bg),
    ] + layout + [
        "configs: bench/scaling/*.in (the HTTP bench's with N workers; nginx listen reuseport)",
        "scaling = req/s at N / (N x req/s at N=%d per CPU); busy = balancer CPU-s per second / N" % counts[0],
        "median of %d rounds, %ds windows after a 1s warm-up, order rotated per round" % (args.rounds, args.duration),
    ]
    text = "\n".join(notes) + "\n\n" + "\n\n".join(tables) + "\n\nper window:\n" + "\n".join(lines) + "\n"
    print(text)
    benchlib.write_results(text, args.out, "scaling", datetime.datetime.now())


if __name__ == "__main__":
    benchlib.run_main(main)
