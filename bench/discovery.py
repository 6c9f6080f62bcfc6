#!/usr/bin/python3
"""DNS service discovery: a rolling replacement announced through DNS, under
load; sluice vs HAProxy vs NGINX.

Per trial: six sluice-origins on 127.0.0.11 to 127.0.0.16, all on one port,
and a DNS server (tests/integration/dns_server.py, in this process) whose
name app.test first resolves to .11, .12 and .13. A fresh balancer follows
the name, re-resolving every second. A fixed-concurrency keep-alive client
(32 connections, each one request per 20 ms: 1600 req/s offered, /delay/10)
runs for 12 s. At t = 2, 4 and 6 s one address in the answer is replaced
by the next one (.11 by .14, .12 by .15, .13 by .16), as a rolling deploy
does; one second after each change the replaced origin is SIGKILLed (a pod
whose termination grace ends). From t = 8 to 11 s the DNS server answers
nothing (a resolver outage). Reported, per balancer:
  failed   client requests that got a non-2xx status or a connection error,
           during the rolling changes (t < 8 s) and during the outage
  shift    seconds from the balancer's first query after a DNS change to
           the first response from the new origin (median of the three
           changes): what the balancer adds to its resolution interval
  stale    the same, to the last response from the origin the change
           removed (in-flight requests included)
  queries  DNS queries the balancer sent per second
Configs, each resolving every 1 s:
  sluice   discovery {dns: app.test, port, resolvers, interval: 1s};
           health_check http /health 500 ms (250 ms timeout, 2 to fall,
           2 to rise); retries {attempts: 2, retry_on: [connect_failure,
           reset, 502, 503, 504]}; upstream keep-alive
  haproxy  server-template s 1-6 app.test:PORT resolvers dns init-addr none,
           check inter 500 fall 2 rise 2; resolvers: timeout resolve 1s,
           hold valid 1s, hold obsolete 0s; retries 2, option redispatch,
           retry-on all-retryable-errors; http-reuse always
  nginx    NGINX 1.22 (open source) re-resolves only names in a variable:
           proxy_pass http://$app:PORT with resolver ... valid=1s;
           proxy_next_upstream error timeout http_502 http_503 http_504. It
           has no upstream keep-alive and no health checks this way (its
           `upstream` blocks resolve names once, at start).
All pinned to CPU 0; the client, origins and DNS server on CPU 1. Every load
loop is bounded in time and the run has a watchdog; only PIDs this script
started are signalled.
Usage: bench/discovery.py [--rounds N] [--only sluice,haproxy,nginx]
Results: printed, and written to bench/results/discovery-<date>.txt.
"""
import os
import sys

# bench/http.py would shadow the standard library's http package: this
# script's directory goes to the END of the import path (see failover.py).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
sys.path.append(os.path.join(HERE, "..", "tests", "integration"))

import argparse  # noqa: E402
import datetime  # noqa: E402
import signal  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import benchlib  # noqa: E402
from benchlib import (BAL_CPU, CLIENT_CPU, HAPROXY, NGINX, ORIGIN, SLUICE, cleanup, die,  # noqa: E402
                      foreign_cpu, log, stop_all, tail)
from dns_server import DnsServer  # noqa: E402
import paced  # noqa: E402
from paced import Client, Origin, fmt_s, median_or_never, ratio, warm  # noqa: E402

WATCHDOG_S = 600
HOSTS = ["127.0.0.%d" % i for i in range(11, 17)]
PRODUCTS = ("sluice", "haproxy", "nginx")

benchlib.setup("discovery bench")


# ---- configs -----------------------------------------------------------------

def sluice_config(tmp, port, oport, dns):
    path = os.path.join(tmp, "sluice.yaml")
    with open(path, "w") as f:
        f.write("""workers: 1
drain_timeout: 5s
log: {level: info, access: "off"}
listeners:
  - {name: web, bind: "127.0.0.1:%d", mode: http, pool: app}
pools:
  - name: app
    balance: round_robin
    timeouts: {connect: 2s, upstream_response: 10s}
    retries: {attempts: 2, retry_on: [connect_failure, reset, 502, 503, 504]}
    health_check: {type: http, path: /health, interval: 500ms, timeout: 250ms,
                   unhealthy_threshold: 2, healthy_threshold: 2}
    discovery: {dns: app.test, port: %d, resolvers: ["%s"], interval: 1s, max_backends: 6}
""" % (port, oport, dns.address))
    return path


def haproxy_config(tmp, port, oport, dns):
    path = os.path.join(tmp, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(paced.haproxy_cfg("""global
    nbthread 1
    maxconn 4000

resolvers dns
    nameserver ns1 %s
    accepted_payload_size 1232
    resolve_retries 2
    timeout resolve 1s
    timeout retry 250ms
    hold valid 1s
    hold obsolete 0s
    hold nx 0s
    hold other 30s
    hold refused 30s
    hold timeout 30s

@DEFAULTS@    retries 2
    option redispatch
    retry-on all-retryable-errors
    http-reuse always

frontend web
    bind 127.0.0.1:%d
    default_backend app

backend app
    balance roundrobin
    option httpchk GET /health
    server-template s 1-6 app.test:%d resolvers dns init-addr none resolve-prefer ipv4 check inter 500 fall 2 rise 2
""" % (dns.address, port, oport)))
    return path


def nginx_config(ntmp, port, oport, dns):
    return paced.nginx_conf(ntmp, """    resolver %(dns)s valid=1s ipv6=off;
    resolver_timeout 1s;
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            set $app app.test;
            proxy_pass http://$app:%(oport)d;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }
    }
""" % dict(port=port, oport=oport, dns=dns.address))


def start_balancer(tmp, prod, oport, dns):
    return paced.start_balancer(prod, tmp, lambda d, port: sluice_config(d, port, oport, dns),
                                lambda d, port: haproxy_config(d, port, oport, dns),
                                lambda d, port: nginx_config(d, port, oport, dns))


def common_port():
    """A port free on every origin address."""
    for _ in range(50):
        port = benchlib.free_port()
        socks = []
        try:
            for h in HOSTS:
                s = socket.socket()
                socks.append(s)
                s.bind((h, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    die("no port is free on all of %s" % ", ".join(HOSTS))


# ---- a trial -----------------------------------------------------------------

def trial(prod, args):
    tmp = tempfile.mkdtemp(prefix="sluice-bench-discovery-")
    benchlib.tmpdirs.append(tmp)
    oport = common_port()
    origins = [Origin("o%s" % h.split(".")[-1], oport, tmp, host=h) for h in HOSTS]
    for o in origins:
        o.start()
    for o in origins:
        o.wait()
    dns = DnsServer()
    answer = HOSTS[:3]
    dns.set_a("app.test", answer)
    try:
        port, bal = start_balancer(tmp, prod, oport, dns)
        warm(port, [o.name for o in origins[:3]])
        time.sleep(1.0)                  # checks have seen every backend up
        f0 = foreign_cpu()
        c = Client(port, "GET", args.conns, args.interval, args.path)
        t0 = time.monotonic() + 0.05
        ths = c.run(t0, t0 + args.duration)
        changes = []
        for step in range(3):
            at = t0 + args.first_change + step * args.step
            time.sleep(max(0, at - time.monotonic()))
            old, new = answer[0], HOSTS[3 + step]
            answer = answer[1:] + [new]
            dns.set_a("app.test", answer)
            changes.append((time.monotonic(), "o" + old.split(".")[-1], "o" + new.split(".")[-1]))
            time.sleep(max(0, at + args.kill_after - time.monotonic()))
            origins[step].kill9()
        out_from = t0 + args.first_change + 3 * args.step
        time.sleep(max(0, out_from - time.monotonic()))
        dns.set_mode("silent")
        time.sleep(max(0, out_from + args.outage - time.monotonic()))
        dns.set_mode("answer")
        for t in ths:
            t.join(timeout=args.duration + 10)
        if any(t.is_alive() for t in ths):
            die("%s: client threads did not stop" % prod)
        f1 = foreign_cpu()
    finally:
        dns.stop()
    foreign = sum(max(0.0, v - f0.get(pid, 0.0)) for pid, v in f1.items()) / args.duration
    died = None
    if bal.poll() is not None:
        died = "exit status %s" % bal.returncode if bal.returncode >= 0 else \
            "killed by signal %d" % -bal.returncode
        log("  %s DIED during the trial (%s):\n%s" % (prod, died, tail(bal.bench_out, 120)))
    recs = sorted(c.records)
    fails = [r for r in recs if not r[2]]
    out_from = t0 + args.first_change + 3 * args.step
    fails_outage = [r for r in fails if r[0] >= out_from]
    shifts, stales = [], []
    queries = [q for q in dns.query_times if t0 <= q <= t0 + args.duration]
    for t_change, old, new in changes:
        # From the first query after the change: the interval's phase is
        # the same for all, what the balancer does with an answer is not.
        asked = next((q for q in queries if q >= t_change), None)
        first_new = [r[1] for r in recs if r[4] == new and r[2]]
        last_old = [r[1] for r in recs if r[4] == old and r[2] and r[0] >= t_change - 1]
        if asked is None:
            shifts.append(None)
            stales.append(None)
            continue
        shifts.append(max(0.0, first_new[0] - asked) if first_new else None)
        stales.append(max(0.0, last_old[-1] - asked) if last_old else 0.0)
    kinds = {}
    for r in fails:
        k = "%s %s" % (r[3] or "conn", r[5])
        kinds[k] = kinds.get(k, 0) + 1
    qps = len(queries) / args.duration
    res = dict(prod=prod, n=len(recs), failed=len(fails) - len(fails_outage),
               failed_outage=len(fails_outage), shifts=shifts, stales=stales, qps=qps,
               foreign=foreign, died=died, kinds=kinds)
    res["line"] = ("  %-8s requests %5d  failed %4d + %4d in the outage  shift %s  stale %s"
                   "  queries/s %.1f%s%s" % (
        prod, len(recs), res["failed"], len(fails_outage), "/".join(fmt_s(x) for x in shifts),
        "/".join(fmt_s(x) for x in stales), qps, "  BALANCER DIED (%s)" % died if died else "",
        "  DISTURBED: other processes took %.0f%% of a CPU" % (100 * foreign)
        if foreign > 0.05 else ""))
    log(res["line"])
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
        log("      %4d x %s" % (v, k))
    stop_all()
    shutil.rmtree(tmp, ignore_errors=True)
    benchlib.tmpdirs.remove(tmp)
    return res


# ---- report ------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=12.0, help="client run per trial, s")
    ap.add_argument("--first-change", type=float, default=2.0, help="first DNS change, s")
    ap.add_argument("--step", type=float, default=2.0, help="between DNS changes, s")
    ap.add_argument("--kill-after", type=float, default=1.0,
                    help="SIGKILL the replaced origin this long after its change, s")
    ap.add_argument("--outage", type=float, default=3.0,
                    help="the DNS server answers nothing for this long after the last change"
                         " (from first-change + 3 steps), s")
    ap.add_argument("--rounds", type=int, default=2, help="trials per balancer (default 2)")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--interval", type=float, default=0.02,
                    help="each connection sends one request per this many s")
    ap.add_argument("--path", default="/delay/10")
    ap.add_argument("--wait-quiet", type=float, default=10)
    ap.add_argument("--only", default="", help="comma-separated products (default all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    prods = [p for p in PRODUCTS if not args.only or p in args.only.split(",")]
    if args.first_change + 3 * args.step + args.outage >= args.duration or \
            args.kill_after >= args.step:
        die("the changes, kills and outage must fit in the run")
    benchlib.need_binaries((SLUICE, ORIGIN, HAPROXY, NGINX))
    budget = args.rounds * len(prods) * (args.duration + 6 + args.wait_quiet)
    if budget > WATCHDOG_S - 30:
        die("this run would take about %.0fs (limit %ds)" % (budget, WATCHDOG_S))
    benchlib.install_signals(WATCHDOG_S)
    signal.alarm(WATCHDOG_S)
    os.sched_setaffinity(0, {CLIENT_CPU})
    runs = {}
    try:
        for rnd in range(args.rounds):
            for prod in prods:
                benchlib.wait_quiet(args.wait_quiet)
                runs.setdefault(prod, []).append(trial(prod, args))
    finally:
        stop_all()

    now = datetime.datetime.now()
    head = ["balancer", "failed, rolling", "failed, resolver down", "shift s (median)",
            "stale s (median)", "DNS queries/s", "requests"]
    rows, agg = [], {}
    for prod in prods:
        rs = runs.get(prod, [])
        a = dict(failed=sum(r["failed"] for r in rs),
                 failed_outage=sum(r["failed_outage"] for r in rs),
                 shift=median_or_never([x for r in rs for x in r["shifts"]]),
                 stale=median_or_never([x for r in rs for x in r["stales"]]),
                 n=sum(r["n"] for r in rs), died=any(r["died"] for r in rs))
        agg[prod] = a
        rows.append([prod, "%d (%s)%s" % (a["failed"], "+".join(str(r["failed"]) for r in rs),
                                         " DIED" if a["died"] else ""),
                     "%d (%s)" % (a["failed_outage"], "+".join(str(r["failed_outage"]) for r in rs)),
                     fmt_s(a["shift"]), fmt_s(a["stale"]),
                     "%.1f" % statistics.mean(r["qps"] for r in rs) if rs else "-", str(a["n"])])
    out = ["ratios sluice / peer (lower is better):"]
    for peer in ("haproxy", "nginx"):
        if "sluice" in agg and peer in agg:
            s, p = agg["sluice"], agg[peer]
            out.append("  vs %-7s failed %d/%d = %s, failed while the resolver was down %d/%d = %s,"
                       " shift %s, stale %s" % (
                           peer, s["failed"], p["failed"], ratio(s["failed"], p["failed"]),
                           s["failed_outage"], p["failed_outage"],
                           ratio(s["failed_outage"], p["failed_outage"]),
                           ratio(s["shift"], p["shift"]), ratio(s["stale"], p["stale"])))
    notes = [
        "sluice discovery bench, %s" % now.strftime("%Y-%m-%d %H:%M:%S"),
        benchlib.host_note(),
        benchlib.versions_note(with_path=True),
        "per trial: fresh balancer (CPU %d), 6 sluice-origins on %s..%s (CPU %d), DNS server"
        " in the driver; client %d keep-alive connections, one request per %.0f ms each"
        " (%.0f req/s), GET %s, %.0f s; DNS changes at t=%.0f, %.0f, %.0f s, each replaced"
        " origin SIGKILLed %.1f s after its change; no DNS answers from t=%.0f to %.0f s;"
        " %d round(s)" % (
            BAL_CPU, HOSTS[0], HOSTS[-1], CLIENT_CPU, args.conns, 1000 * args.interval,
            args.conns / args.interval, args.path, args.duration, args.first_change,
            args.first_change + args.step, args.first_change + 2 * args.step, args.kill_after,
            args.first_change + 3 * args.step, args.first_change + 3 * args.step + args.outage,
            args.rounds),
        "shift/stale: from the balancer's first DNS query after a change to the first response"
        " from the new origin / the last from the removed one",
        "every balancer re-resolves every 1 s; configs in bench/discovery.py's docstring",
    ]
    text = "\n".join(notes) + "\n\n" + benchlib.render_table(head, rows) + "\n\n" + \
        "\n".join(out) + "\n\nper trial:\n" + \
        "\n".join(r["line"] for p in prods for r in runs.get(p, [])) + "\n"
    print(text, flush=True)
    benchlib.write_results(text, args.out, "discovery", now)
    cleanup()
    signal.alarm(0)


if __name__ == "__main__":
    benchlib.run_main(main)
