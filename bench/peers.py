#!/usr/bin/python3
"""One rate limit across two instances: sluice (peers, rate_limit.shared) vs
HAProxy (a stick table synced by `peers`) vs NGINX (limit_req; open-source
NGINX cannot share a zone: zone_sync is NGINX Plus).

Per product: two instances, one worker each, both on CPU 0, in front of one
sluice-origin; a limit of RATE/s per client address, with a burst of RATE/10
(100 ms of it: two busy instances share one CPU, and without a burst a
token bucket loses what falls due while its process waits for the CPU), on
each;
two wrk (-t1 -c10 keep-alive, one per instance, CPU 1) flat out from the
same address for DURATION s. The limit promises RATE/s to that address
however many instances it reaches.

  passed/s    requests answered 2xx per second, both instances together
  vs limit    passed/s / RATE: 1.00 is one limit, 2.00 is each instance
              allowing it on its own
  CPU µs      both instances' CPU (utime + stime) per request answered
              (passed or refused)

HAProxy counts what it let through in gpc0 with gpc0_rate(1s) (the rate
limit bench's recipe) in a table that `peers` pushes to the other instance;
a pushed entry replaces the receiver's, it is not added to it. sluice adds
what its peers let through to its own count (docs/rate_limits.md).

Every load loop is bounded in time; the run has a watchdog; only PIDs this
script started are signalled. Stdlib only.
Usage: bench/peers.py [--duration S] [--rounds N] [--rate N] [--only sluice,haproxy,nginx]
Results: printed, and written to bench/results/peers-<date>.txt.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]

import argparse  # noqa: E402
import datetime  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

import benchlib  # noqa: E402
import paced  # noqa: E402
from benchlib import (BAL_CPU, HAPROXY, NGINX, ORIGIN, SLUICE, cleanup, die, log,  # noqa: E402
                      render_table, start, stop_all, wait_port)

WATCHDOG_S = 300
PRODUCTS = ("sluice", "haproxy", "nginx")

benchlib.setup("peers bench")


def sluice_config(tmp, name, port, peer_port, other_port, origin, rate, burst, key):
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write("""workers: 1
log: {level: warn, access: "off"}
peers: {listen: "127.0.0.1:%d", nodes: ["127.0.0.1:%d"], secret_file: %s}
listeners:
  - name: web
    bind: 127.0.0.1:%d
    mode: http
    pool: app
    rate_limit: {rate: %d/s, burst: %d, shared: true}
pools:
  - name: app
    backends: [{address: "127.0.0.1:%d"}]
""" % (peer_port, other_port, key, port, rate, burst, origin))
    return path


def haproxy_config(tmp, name, port, peers, origin, rate):
    path = os.path.join(tmp, name + ".cfg")
    with open(path, "w") as f:
        f.write(paced.haproxy_cfg("""global
    nbthread 1
    maxconn 4000

peers mesh
%s

@DEFAULTS@    http-reuse always

frontend web
    bind 127.0.0.1:%d
    stick-table type ip size 100k expire 30s store gpc0,gpc0_rate(1s) peers mesh
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_gpc0_rate(0) ge %d }
    http-request sc-inc-gpc0(0)
    default_backend app

backend app
    server o1 127.0.0.1:%d
""" % ("\n".join("    peer %s 127.0.0.1:%d" % p for p in peers), port, rate,
                                  origin)))
    return path


def nginx_config(ntmp, port, origin, rate, burst):
    return paced.nginx_conf(ntmp, """    limit_req_zone $binary_remote_addr zone=per_ip:10m rate=%dr/s;
    limit_req_status 429;
    upstream app {
        server 127.0.0.1:%d;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:%d;
        location / {
            limit_req zone=per_ip burst=%d nodelay;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
""" % (rate, origin, port, burst))


def start_pair(prod, tmp, origin, rate, key, rnd):
    burst = max(1, rate // 10)
    ports = [benchlib.free_port(), benchlib.free_port()]
    links = [benchlib.free_port(), benchlib.free_port()]
    procs = []
    for i, name in enumerate(("a", "b")):
        label = "%s-%s-%d" % (prod, name, rnd)
        if prod == "sluice":
            argv = [SLUICE, "-c", sluice_config(tmp, label, ports[i], links[i], links[1 - i],
                                                 origin, rate, burst, key)]
        elif prod == "haproxy":
            argv = [HAPROXY, "-f", haproxy_config(tmp, label, ports[i],
                                                 [("a", links[0]), ("b", links[1])], origin,
                                                 rate), "-L", name, "-db"]
        else:
            ntmp = os.path.join(tmp, label)
            os.mkdir(ntmp)
            argv = benchlib.nginx_argv(ntmp, nginx_config(ntmp, ports[i], origin, rate, burst))
        p = start(label, argv, BAL_CPU, tmp)
        wait_port(ports[i], p)
        if prod == "nginx":
            benchlib.nginx_workers(p)
        procs.append(p)
    return ports, procs


def cpu_of(procs):
    pids = []
    for p in procs:
        pids.append(p.pid)
        pids += benchlib.children_of(p.pid)
    return sum(benchlib.proc_cpu_s(pid) for pid in pids)


def measure(ports, procs, secs):
    """Both wrk at once, one per instance; returns (requests, passed, cpu s)."""
    res = [None, None]

    def one(i):
        res[i] = benchlib.wrk_window("http://127.0.0.1:%d/" % ports[i], secs, conns=10)
    c0 = cpu_of(procs)
    ths = [threading.Thread(target=one, args=(i,)) for i in (0, 1)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(secs + 40)
    if any(r is None for r in res):
        die("a wrk run did not finish")
    cpu = cpu_of(procs) - c0
    reqs = sum(r["requests"] for r in res)
    passed = sum(r["requests"] - r["refused"] for r in res)
    return reqs, passed, cpu, max(r["secs"] for r in res)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    prods = [p for p in PRODUCTS if not args.only or p in args.only.split(",")]
    benchlib.need_binaries((SLUICE, ORIGIN, HAPROXY, NGINX))
    if args.rounds * len(prods) * (args.duration + 8) > WATCHDOG_S - 30:
        die("this run would take too long")
    benchlib.install_signals(WATCHDOG_S)
    signal.alarm(WATCHDOG_S)
    tmp = tempfile.mkdtemp(prefix="sluice-bench-peers-")
    benchlib.tmpdirs.append(tmp)
    key = os.path.join(tmp, "peers.key")
    with open(key, "w") as f:
        f.write("bench-peers-key-" + "k" * 32 + "\n")
    runs = {p: [] for p in prods}
    try:
        _, oports = benchlib.start_origins(1, tmp, ["--threads", "1"])
        for rnd in range(args.rounds):
            for prod in prods:
                ports, procs = start_pair(prod, tmp, oports[0], args.rate, key, rnd)
                benchlib.wrk_window("http://127.0.0.1:%d/" % ports[0], 1, conns=2)  # warm-up
                reqs, passed, cpu, secs = measure(ports, procs, args.duration)
                r = dict(passed_s=passed / secs, ratio=passed / secs / args.rate,
                         cpu_us=1e6 * cpu / reqs if reqs else 0, reqs=reqs)
                runs[prod].append(r)
                log("  round %d %-8s passed %6.1f/s (%.2f x the limit), %d requests, %.1f CPU us"
                    " per request" % (rnd + 1, prod, r["passed_s"], r["ratio"], reqs, r["cpu_us"]))
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                for p in procs:
                    p.wait(10)
                    benchlib.started.remove(p)
    finally:
        stop_all()
    now = datetime.datetime.now()
    rows = []
    for prod in prods:
        rs = runs[prod]
        if not rs:
            continue
        rows.append([prod, "%.1f" % statistics.median(r["passed_s"] for r in rs),
                     "%.2f (%s)" % (statistics.median(r["ratio"] for r in rs),
                                   "/".join("%.2f" % r["ratio"] for r in rs)),
                     "%.1f" % statistics.median(r["cpu_us"] for r in rs)])
    notes = [
        "sluice peers bench, %s" % now.strftime("%Y-%m-%d %H:%M:%S"),
        benchlib.host_note(),
        benchlib.versions_note(with_path=True),
        "two instances per product (CPU %d), one origin; two wrk -t1 -c10 (one per instance)"
        " from one address for %d s; limit %d/s per address, burst %d (HAProxy: a 1 s window);"
        " %d round(s), medians" % (BAL_CPU, args.duration, args.rate, max(1, args.rate // 10),
                                   args.rounds),
    ]
    text = "\n".join(notes) + "\n\n" + render_table(
        ["product", "passed/s", "vs limit (1.00 = one limit)", "CPU us per request"], rows) + "\n"
    print(text, flush=True)
    benchlib.write_results(text, args.out, "peers", now)
    cleanup()
    signal.alarm(0)


if __name__ == "__main__":
    benchlib.run_main(main)
