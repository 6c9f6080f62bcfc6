#!/usr/bin/python3
"""Failover: a backend dies and comes back under load; sluice vs HAProxy vs NGINX.

For each balancer config and each method (GET, then POST), a fresh trial:
three sluice-origin backends (b1, b2, b3) and a fresh balancer in front of
them; a fixed-concurrency keep-alive client (32 connections, each paced to one
request per 20 ms: the same offered load, 1600 req/s, for every balancer)
requests /delay/10 (each answer takes 10 ms, so about 5 requests are in flight
on b2 at any moment) for 8 s. At t = 2 s b2 is killed with SIGKILL; at t = 4 s
it is started again on the same port. Three rounds (--rounds). Reported per
config and method:
  failed     client requests that got a non-2xx status or a connection error
             (summed over the rounds)
  recovery   seconds from the new b2 listening (it prints `listening`) to the
             first client response that b2 served (X-Origin), i.e. until the
             revived backend takes traffic again (median over the rounds)
  b2 share   b2's share of the responses in the last second (per trial;
             1/3 = fully back)
And once per config, a replay probe: 6 POSTs through the same config in front
of a "black hole" backend (answers GETs so checks pass, resets the connection
on anything else after reading it whole) and one origin. A POST that the black
hole received and that still ended 2xx was sent twice: a balancer that does
this hides failures of non-idempotent requests by replaying them.

Configs (the settings the issue asks for):
  sluice    round_robin (as the peers), and p2c (sluice's default);
            health_check http /health every 500 ms (timeout 250 ms, 2 to fall,
            2 to rise), retries {attempts: 2, retry_on: [connect_failure,
            reset, 502, 503, 504]}, outlier_detection {consecutive_failures: 3,
            ejection_time: 2s}; access log on (its end=, tries= and status
            explain every failure; they are listed in the results)
  haproxy   balance roundrobin, option httpchk GET /health, check inter 500
            fall 2 rise 2, observe layer7, retries 2, option redispatch,
            retry-on all-retryable-errors with http-request disable-l7-retry
            for methods that are not idempotent (what sluice does); an extra
            row leaves that out and replays POSTs
  nginx     round robin, max_fails=1 fail_timeout=2s, proxy_next_upstream
            error timeout http_502 http_503 http_504 (NGINX OSS has no active
            checks); an extra row adds non_idempotent
All with upstream keep-alive, one worker/thread, pinned to CPU 0; the client
(this script, threads with http.client) and the origins on CPU 1. A balancer
that dies during a trial is reported (DIED), not hidden.

Every load loop is bounded in time and the whole run has a watchdog. Only
PIDs this script started are ever signalled.
Stdlib only. Usage: bench/failover.py [--rounds N] [--only a,b] [--methods GET,POST]
Results: printed, and written to bench/results/failover-<date>.txt.

The process, /proc, noise and report helpers are in bench/benchlib.py, shared
with the other drivers.
"""
import os
import sys

# bench/http.py (the HTTP benchmark) would shadow the standard library's http
# package: this script's directory goes to the END of the import path, after
# the standard library, where it still finds bench/benchlib.py.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]

import argparse  # noqa: E402
import datetime  # noqa: E402
import http.client  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import benchlib  # noqa: E402
import paced  # noqa: E402
from paced import POST_BODY, Client, Origin, fmt_s, median_or_never, ratio, warm  # noqa: E402
from benchlib import (BAL_CPU, CLIENT_CPU, HAPROXY, NGINX, ORIGIN, SLUICE, cleanup, die,  # noqa: E402
                      foreign_cpu, free_port, log, stop_all, tail)

WATCHDOG_S = 600

# What sluice does by default, in HAProxy's words: L7 retries (a reset, an
# empty answer, 5xx) only for methods RFC 9110 calls idempotent or requests
# carrying an Idempotency-Key; a refused connect is retried for every method
# (disable-l7-retry keeps conn-failure retries). The "replay" row leaves this
# out, and HAProxy then sends a POST again after a backend had received it.
HAPROXY_SAFE_RETRY = ("    http-request disable-l7-retry if !METH_GET !METH_OPTIONS !METH_PUT"
                      " !METH_DELETE !METH_TRACE !{ req.hdr(idempotency-key) -m found }\n")

# Rows that differ from the one above them only in what they do to POSTs.
REPLAY_VARIANTS = ("non_idempotent", "replay")

# (label, product, variant)
CONFIGS = [
    ("sluice round_robin", "sluice", "round_robin"),
    ("sluice p2c (default)", "sluice", "p2c"),
    ("haproxy", "haproxy", ""),
    ("haproxy + replay POST", "haproxy", "replay"),
    ("nginx", "nginx", ""),
    ("nginx + non_idempotent", "nginx", "non_idempotent"),
]

benchlib.setup("failover bench")


# ---- configs -----------------------------------------------------------------

def sluice_config(tmp, port, origins, balance):
    path = os.path.join(tmp, "sluice.yaml")
    with open(path, "w") as f:
        f.write("""workers: 1
drain_timeout: 1s
log:
  level: info
  access: %(tmp)s/access.log
listeners:
  - name: web
    bind: 127.0.0.1:%(port)d
    mode: http
    pool: app
pools:
  - name: app
    balance: %(balance)s
    timeouts: {connect: 2s, upstream_response: 10s}
    retries: {attempts: 2, retry_on: [connect_failure, reset, 502, 503, 504]}
    outlier_detection: {consecutive_failures: 3, ejection_time: 2s}
    health_check:
      type: http
      path: /health
      interval: 500ms
      timeout: 250ms
      unhealthy_threshold: 2
      healthy_threshold: 2
    backends:
%(backends)s
""" % dict(tmp=tmp, port=port, balance=balance, backends="\n".join(
            "      - {name: %s, address: 127.0.0.1:%d}" % o for o in origins)))
    return path


def haproxy_config(tmp, port, origins, variant):
    path = os.path.join(tmp, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(paced.haproxy_cfg("""global
    nbthread 1
    maxconn 4000

@DEFAULTS@    retries 2
    option redispatch
    retry-on all-retryable-errors

frontend web
    bind 127.0.0.1:%d
%s    default_backend app

backend app
    balance roundrobin
    option httpchk GET /health
    default-server check inter 500 fall 2 rise 2 observe layer7
%s
""" % (port, HAPROXY_SAFE_RETRY if variant != "replay" else "",
       "\n".join("    server %s 127.0.0.1:%d" % o for o in origins))))
    return path


def nginx_config(ntmp, port, origins, variant):
    nu = "error timeout http_502 http_503 http_504" + (" non_idempotent" if variant else "")
    return paced.nginx_conf(ntmp, """    upstream app {
%(servers)s
        keepalive 32;
    }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream %(nu)s;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }
    }
""" % dict(port=port, nu=nu, servers="\n".join(
        "        server 127.0.0.1:%d max_fails=1 fail_timeout=2s;" % o[1] for o in origins)))


def start_balancer(tmp, cfg, origins):
    _, prod, variant = cfg
    return paced.start_balancer(
        prod, tmp, lambda d, port: sluice_config(d, port, origins, variant),
        lambda d, port: haproxy_config(d, port, origins, variant),
        lambda d, port: nginx_config(d, port, origins, variant))


# ---- does the balancer replay a POST that a backend already received? --------

class BlackHole:
    """A backend that answers every GET (health checks pass) with 200, and
    resets the connection on any other request after reading it whole: a
    backend that dies while holding a request. Counts what it received."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = []       # X-Probe-Id of each non-GET request received
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(5)
        buf = b""
        try:
            while not self.stop:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
                while b"\r\n\r\n" in buf:
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head.lower())
                    need = int(m.group(1)) if m else 0
                    if len(rest) < need:
                        break
                    buf = rest[need:]
                    if head.startswith(b"GET ") or head.startswith(b"HEAD "):
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Origin: blackhole\r\n\r\nok\n")
                        continue
                    m = re.search(rb"\r\nx-probe-id:\s*(\d+)", head.lower())
                    self.received.append(int(m.group(1)) if m else -1)
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.close()
                    return
        except OSError:
            pass
        c.close()

    def close(self):
        self.stop = True
        self.sock.close()


def replay_probe(cfg, n=6):
    """n POSTs through the balancer configured as in the trial, in front of a
    black hole and one sluice-origin: how many did the black hole receive
    (and reset) that the client still got a 2xx for? Those were sent twice."""
    tmp = tempfile.mkdtemp(prefix="sluice-bench-failover-probe-")
    benchlib.tmpdirs.append(tmp)
    bh = BlackHole()
    good = Origin("good", free_port(), tmp)
    good.start()
    good.wait(fresh=True)
    port, bal = start_balancer(tmp, cfg, [("bh", bh.port), ("good", good.port)])
    warm(port, ["blackhole", "good"])
    ok_ids = set()
    for i in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("POST", "/", body=POST_BODY, headers={"Content-Type": "text/plain",
                                                               "X-Probe-Id": str(i)})
            r = conn.getresponse()
            r.read()
            if 200 <= r.status < 300:
                ok_ids.add(i)
        except (OSError, http.client.HTTPException):
            pass
        conn.close()
    time.sleep(0.1)
    received = list(bh.received)
    bh.close()
    stop_all()
    shutil.rmtree(tmp, ignore_errors=True)
    benchlib.tmpdirs.remove(tmp)
    # A POST the black hole received (and reset) that still ended 2xx for the
    # client was sent again, to "good".
    replayed = len(ok_ids & set(received))
    ok = len(ok_ids)
    log("  %-24s replay probe: %d POSTs, black hole received %d of them (%d times), client got 2xx for %d:"
        " %d replayed after a backend had received them" % (
            cfg[0], n, len(set(received)), len(received), ok, replayed))
    return dict(n=n, received=len(set(received)), ok=ok, replayed=replayed)


def trial(cfg, method, args):
    label = cfg[0]
    tmp = tempfile.mkdtemp(prefix="sluice-bench-failover-")
    benchlib.tmpdirs.append(tmp)
    origins = [Origin("b%d" % i, free_port(), tmp) for i in (1, 2, 3)]
    for o in origins:
        o.start()
    for o in origins:
        o.wait(fresh=True)
    port, bal = start_balancer(tmp, cfg, [(o.name, o.port) for o in origins])
    warm(port, [o.name for o in origins])
    time.sleep(1.0)                     # the health checks have seen every backend up
    victim = origins[1]
    f0 = foreign_cpu()
    c = Client(port, method, args.conns, args.interval, args.path)
    t0 = time.monotonic() + 0.05
    ths = c.run(t0, t0 + args.duration)
    time.sleep(max(0, t0 + args.kill_at - time.monotonic()))
    t_kill = time.monotonic()
    victim.kill9()
    time.sleep(max(0, t0 + args.restart_at - time.monotonic()))
    t_restart = time.monotonic()
    victim.start()
    for t in ths:
        t.join(timeout=args.duration + 10)
    if any(t.is_alive() for t in ths):
        die("%s: client threads did not stop" % label)
    victim.wait()
    f1 = foreign_cpu()
    foreign = sum(max(0.0, v - f0.get(pid, 0.0)) for pid, v in f1.items()) / args.duration
    died = None
    if bal.poll() is not None:
        # A crash is a result, not a reason to stop the run: report it.
        died = "exit status %s" % bal.returncode if bal.returncode >= 0 else \
            "killed by signal %d" % -bal.returncode
        log("  %s DIED during the trial (%s):\n%s" % (label, died, tail(bal.bench_out, 120)))
    recs = sorted(c.records)
    fails = [r for r in recs if not r[2]]
    back = [r for r in recs if r[4] == victim.name and r[1] > victim.listening_at]
    recovery = (back[0][1] - victim.listening_at) if back else None
    last = [r for r in recs if r[1] >= t0 + args.duration - 1.0 and r[2]]
    share = sum(1 for r in last if r[4] == victim.name) / len(last) if last else 0.0
    res = dict(label=label, method=method, n=len(recs), failed=len(fails), recovery=recovery,
               share=share, foreign=foreign, died=died, listen_delay=victim.listening_at - t_restart,
               fails=[(r[0] - t0, r[1] - r[0], r[3], r[5]) for r in fails])
    line = ("  %-24s %-4s requests %5d  failed %3d  recovery %s  b2 share (last 1 s) %4.1f%%  "
            "(kill at %.2f s, b2 listening again at %.2f s)%s%s" % (
                label, method, len(recs), len(fails),
                "%.2f s" % recovery if recovery is not None else "never",
                100 * share, t_kill - t0, victim.listening_at - t0,
                "  BALANCER DIED (%s)" % died if died else "",
                "  DISTURBED: other processes took %.0f%% of a CPU" % (100 * foreign)
                if foreign > 0.05 else ""))
    log(line)
    res["line"] = line
    detail = []
    kinds = {}
    for t, dur, st, err in res["fails"]:
        k = "%s %s" % (st or "conn", err)
        kinds[k] = kinds.get(k, 0) + 1
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        detail.append("      %4d x %s" % (v, k))
    if fails:
        detail.append("      at t = " + ", ".join("%.3f" % f[0] for f in res["fails"][:20]) +
                      (" ..." if len(fails) > 20 else "") + " s")
    if cfg[1] == "sluice":
        # The access log says what sluice did with each request that failed
        # (status, end=, tries=), and what it retried.
        try:
            with open(os.path.join(tmp, "access.log")) as f:
                alog = f.read().splitlines()
        except OSError:
            alog = []
        bad = [l for l in alog if not re.search(r'" 2\d\d ', l)]
        retried = [l for l in alog if re.search(r" tries=([2-9]|\d\d)", l)]
        res["retried"] = len(retried)
        detail.append("      sluice access log: %d lines, %d with tries > 1, %d not 2xx" % (
            len(alog), len(retried), len(bad)))
        for l in bad[:10]:
            detail.append("        " + l)
        evs = [l for l in tail(bal.bench_out, 400).splitlines()
               if re.search(r"event=(backend_state|outlier_|retry_budget)", l)]
        for l in evs[:12]:
            detail.append("        " + l)
    if cfg[1] == "nginx":
        errs = tail(os.path.join(tmp, "nginx", "nginx-error.log"), 400).splitlines()
        kinds = {}
        for l in errs:
            m = re.search(r"\[(\w+)\] \d+#\d+: \*?\d* ?(.*?)(, client:|$)", l)
            if m:
                k = "[%s] %s" % (m.group(1), re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "ADDR", m.group(2))[:90])
                kinds[k] = kinds.get(k, 0) + 1
        for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]:
            detail.append("      nginx error log: %4d x %s" % (v, k))
    res["detail"] = detail
    for d in detail:
        log(d)
    stop_all()
    shutil.rmtree(tmp, ignore_errors=True)
    benchlib.tmpdirs.remove(tmp)
    return res


# ---- report ------------------------------------------------------------------

def aggregate(runs):
    """The rounds of one (config, method): failures summed, recovery median."""
    if not runs:
        return None
    recs = [r["recovery"] for r in runs]
    med = median_or_never(recs)
    return dict(failed=sum(r["failed"] for r in runs), fails=[r["failed"] for r in runs],
                recovery=med,
                recs=recs, share=min(r["share"] for r in runs), n=sum(r["n"] for r in runs),
                died=[r["died"] for r in runs if r["died"]],
                noisy=sum(1 for r in runs if r["foreign"] > 0.05))


def table(agg, probes, rounds):
    head = ["config", "GET failed", "POST failed", "recovery s GET", "recovery s POST",
            "replays a received POST", "requests GET / POST"]
    rows = []
    for label, _, _ in CONFIGS:
        g, p = agg.get((label, "GET")), agg.get((label, "POST"))
        if not g and not p:
            continue

        def failed(r):
            if not r:
                return "-"
            c = "%d" % r["failed"]
            if rounds > 1:
                c += " (%s)" % "+".join(str(x) for x in r["fails"])
            return c + (" DIED" if r["died"] else "")

        def rec(r):
            if not r:
                return "-"
            c = fmt_s(r["recovery"])
            if rounds > 1:
                c += " (%s)" % "/".join(fmt_s(x) for x in r["recs"])
            return c
        pr = probes.get(label)
        rows.append([label, failed(g), failed(p), rec(g), rec(p),
                     ("yes (%d of %d)" % (pr["replayed"], pr["received"]) if pr["replayed"] else
                      "no (0 of %d)" % pr["received"]) if pr else "-",
                     "%s / %s" % (g["n"] if g else "-", p["n"] if p else "-")])
    return benchlib.render_table(head, rows)


def ratios(agg):
    out = ["ratios sluice / peer (failed requests and recovery time: lower is better):"]
    for s in ("sluice round_robin", "sluice p2c (default)"):
        for peer in ("haproxy", "nginx"):
            cells = []
            for m in ("GET", "POST"):
                a, b = agg.get((s, m)), agg.get((peer, m))
                if a and b:
                    cells.append("%s failed %d/%d = %s, recovery %s/%s = %s" % (
                        m, a["failed"], b["failed"], ratio(a["failed"], b["failed"]),
                        fmt_s(a["recovery"]), fmt_s(b["recovery"]),
                        ratio(a["recovery"], b["recovery"])))
            if cells:
                out.append("  %-20s vs %-7s %s" % (s, peer, "; ".join(cells)))
    return "\n".join(out)


def targets(agg, probes):
    out = ["targets:"]
    for s in ("sluice round_robin", "sluice p2c (default)"):
        g, p = agg.get((s, "GET")), agg.get((s, "POST"))
        if g:
            out.append("  %-20s 0 failed idempotent (GET) requests: %s (%d)" % (
                s, "met" if g["failed"] == 0 and not g["died"] else "MISSED", g["failed"]))
        if p:
            peers = [(x, agg.get((x, "POST"))) for x in ("haproxy", "nginx")]
            peers = [(x, r) for x, r in peers if r]
            if peers:
                best = min(r["failed"] for _, r in peers)
                out.append("  %-20s POST failures %d <= each peer's (%s): %s" % (
                    s, p["failed"], ", ".join("%s %d" % (x, r["failed"]) for x, r in peers),
                    "met" if p["failed"] <= best and not p["died"] else "MISSED"))
                replayers = [x for x, _ in peers if probes.get(x, {}).get("replayed")]
                if replayers:
                    out.append("  %-20s   (note: %s sent POSTs again after a backend had received"
                               " them, see the replay column; sluice does not, without an"
                               " Idempotency-Key)" % ("", ", ".join(replayers)))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8.0, help="client run per trial, s (default 8)")
    ap.add_argument("--kill-at", type=float, default=2.0, help="SIGKILL b2 at this time, s (default 2)")
    ap.add_argument("--restart-at", type=float, default=4.0, help="start b2 again, s (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="trials per config and method (default 3)")
    ap.add_argument("--conns", type=int, default=32, help="client connections (default 32)")
    ap.add_argument("--interval", type=float, default=0.02,
                    help="each connection sends one request per this many s (default 0.02)")
    ap.add_argument("--path", default="/delay/10",
                    help="request path (default /delay/10: the origin answers 10 ms late, so"
                         " requests are in flight on b2 when it is killed)")
    ap.add_argument("--methods", default="GET,POST")
    ap.add_argument("--no-probe", action="store_true", help="skip the POST replay probe")
    ap.add_argument("--wait-quiet", type=float, default=20,
                    help="before each trial, wait up to S s for other processes to calm down (default 20)")
    ap.add_argument("--only", default="", help="comma-separated labels or products (default all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    global CONFIGS
    if args.only:
        want = set(x.strip() for x in args.only.split(","))
        CONFIGS = [c for c in CONFIGS if c[0] in want or c[1] in want]
    methods = args.methods.split(",")
    if not args.kill_at < args.restart_at < args.duration:
        die("need kill-at < restart-at < duration")
    benchlib.need_binaries((SLUICE, ORIGIN, HAPROXY, NGINX))
    ntrials = sum(1 for c in CONFIGS for m in methods if not (c[2] in REPLAY_VARIANTS and m == "GET"))
    budget = args.rounds * ntrials * (args.duration + 4) + len(CONFIGS) * 4 + 10
    if budget > WATCHDOG_S - 30:
        die("this run would take about %.0fs (limit %ds)" % (budget, WATCHDOG_S))

    benchlib.install_signals(WATCHDOG_S)
    signal.alarm(WATCHDOG_S)
    os.sched_setaffinity(0, {CLIENT_CPU})
    runs, probes = {}, {}
    try:
        if not args.no_probe and "POST" in methods:
            for cfg in CONFIGS:
                probes[cfg[0]] = replay_probe(cfg)
        slack = WATCHDOG_S - 30 - budget
        remaining = args.rounds * ntrials
        for rnd in range(args.rounds):
            for cfg in CONFIGS:
                for m in methods:
                    if cfg[2] in REPLAY_VARIANTS and m == "GET":
                        continue            # only changes what happens to POSTs
                    # Wait (bounded, a fair share of the slack) for a quiet machine.
                    t = time.monotonic()
                    benchlib.wait_quiet(min(args.wait_quiet, max(0.0, 2 * slack / remaining)))
                    slack -= time.monotonic() - t
                    remaining -= 1
                    r = trial(cfg, m, args)
                    r["round"] = rnd + 1
                    runs.setdefault((cfg[0], m), []).append(r)
    finally:
        stop_all()
    agg = {k: aggregate(v) for k, v in runs.items()}

    now = datetime.datetime.now()
    notes = [
        "sluice failover bench, %s" % now.strftime("%Y-%m-%d %H:%M:%S"),
        benchlib.host_note(),
        benchlib.versions_note(with_path=True),
        "per trial: fresh balancer (CPU %d) + 3 fresh sluice-origin (CPU %d); client: %d keep-alive"
        " connections (threads, http.client), each one request per %.0f ms (%.0f req/s offered),"
        " %.0f s; b2 SIGKILLed at t=%.0f s, restarted on the same port at t=%.0f s; %d round(s)"
        " per config and method (failures: sum over rounds, each round in brackets; recovery:"
        " median, each round in brackets)" % (
            BAL_CPU, CLIENT_CPU, args.conns, 1000 * args.interval, args.conns / args.interval,
            args.duration, args.kill_at, args.restart_at, args.rounds),
        "GET %s (idempotent) or POST %s with a %d-byte body (not idempotent, no Idempotency-Key);"
        " %s" % (args.path, args.path, len(POST_BODY),
                 "the origin answers after %s ms, so about %.0f requests are in flight on b2 when it"
                 " is killed" % (args.path.split("/")[2], args.conns / args.interval / 3 *
                                 int(args.path.split("/")[2]) / 1000.0)
                 if re.match(r"^/delay/\d+$", args.path) else "the origin answers at once"),
        "failed = non-2xx status or connection error seen by the client; recovery = from the new b2"
        " listening to the first client response it served (never: not within the run)",
        "replays a received POST: before the trials, 6 POSTs through the same config in front of a"
        " black hole (answers GETs, resets on anything else after reading it) and one origin: POSTs"
        " the black hole received that still ended 2xx were sent twice",
        "sluice: retries {attempts: 2, retry_on: [connect_failure, reset, 502, 503, 504]},"
        " outlier_detection {consecutive_failures: 3, ejection_time: 2s}, health_check http /health"
        " 500ms/250ms, 2 down, 2 up; access log on",
        "haproxy: roundrobin, option httpchk GET /health, check inter 500 fall 2 rise 2 observe layer7,"
        " retries 2, option redispatch, retry-on all-retryable-errors, http-request disable-l7-retry"
        " unless the method is idempotent or an Idempotency-Key is present (left out in the"
        " 'replay POST' row)",
        "nginx: round robin, max_fails=1 fail_timeout=2s, proxy_next_upstream error timeout http_502"
        " http_503 http_504 (+ non_idempotent in its labelled row), keepalive 32",
    ]
    text = "\n".join(notes) + "\n\n" + table(agg, probes, args.rounds) + "\n\n" + ratios(agg) + \
        "\n\n" + targets(agg, probes) + "\n"
    noisy = sum(a["noisy"] for a in agg.values())
    if noisy:
        text += ("\nnote: other processes took more than 5%% of a CPU during %d trial(s) (marked"
                 " DISTURBED below)\n" % noisy)
    print(text, flush=True)
    text += "\nper trial (failures by kind; sluice: access-log lines that were not 2xx, state events):\n"
    for k in runs:
        for r in runs[k]:
            text += ("round %d" % r["round"]) + r["line"][1:] + "\n" + "".join(d + "\n" for d in r["detail"])
    benchlib.write_results(text, args.out, "failover", now)
    cleanup()
    signal.alarm(0)


if __name__ == "__main__":
    benchlib.run_main(main)
