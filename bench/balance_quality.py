#!/usr/bin/python3
"""Balancing quality: one slow backend (a gray failure), sluice vs HAProxy vs NGINX.

Three origins: b1 and b2 are sluice-origin; b3 answers every request 200 ms
late (a small asyncio HTTP/1.1 server run by this script, keep-alive,
Content-Length): a backend that would pass health checks but is slow. Every
balancer config gets the same client load (GET /, keep-alive) in front of the
same three origins; for each we report req/s, client p50/p99/p99.9 and the
slow backend's share of the requests (counted at the origins: sluice-origin's
/stats, b3's own counter).

Two load modes, each run for every config:
  open    a fixed rate (default 2000 req/s) whatever the answers do: the same
          offered load for all; latency from each request's scheduled time
  closed  32 connections, each sending as soon as its previous answer is
          complete (what wrk -c32 does): a better balancer also gets more req/s
The client is bench/balance_quality/loadgen.c (built with cc at the start);
its percentiles are raw, one sample per request. wrk is not used: after the
run it corrects its histogram for coordinated omission (stats_correct) by
adding a synthetic sample every expected inter-request interval of a
connection (about 1 ms at 30k req/s over 32 connections), so each 200 ms
answer becomes ~190 samples between 1 and 200 ms, and a 0.2% slow share reads
as a ~195 ms p99 (and a mean that Little's law says is impossible).

Configs, all in one run, one balancer process per product, one pool per
algorithm, one worker/thread each, pinned to CPU 0 (client + origins on
CPU 1), upstream keep-alive everywhere, no health checks, no access logs:
  sluice   round_robin, least_conn, p2c, ewma, random
  haproxy  roundrobin, leastconn, random(2)      (random(2) = power of two)
  nginx    round robin (default), least_conn, random two least_conn

Every load loop is bounded in time (the client's own duration and grace,
a subprocess timeout) and the whole run has a watchdog. Only PIDs this
script started are ever signalled.
Stdlib only (plus cc). Usage: bench/balance_quality.py [--duration S] [--rate R]
Results: printed, and written to bench/results/balance-quality-<date>.txt.

The process, /proc, noise and report helpers are in bench/benchlib.py, shared
with the other drivers.
"""
import argparse
import asyncio
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

# The helpers shared with the other drivers are in bench/benchlib.py. This
# directory goes to the END of the import path, so that bench/http.py never
# shadows the standard library's http package.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import (BAL_CPU, CC, CLIENT_CPU, HAPROXY, NGINX, NOISE, ORIGIN, ROOT, SLUICE,  # noqa: E402
                      cleanup, die, free_port, log, noise_note, start, stop_all, tail, wait_port)

LOADGEN_C = os.path.join(ROOT, "bench", "balance_quality", "loadgen.c")
PYTHON = "/usr/bin/python3"
WATCHDOG_S = 900
MAX_FORKS = 2                # a run is disturbed when more processes than this started during it

# (label, product, algorithm as the product spells it)
CONFIGS = [
    ("sluice round_robin", "sluice", "round_robin"),
    ("sluice least_conn", "sluice", "least_conn"),
    ("sluice p2c", "sluice", "p2c"),
    ("sluice ewma", "sluice", "ewma"),
    ("sluice random", "sluice", "random"),
    ("haproxy roundrobin", "haproxy", "roundrobin"),
    ("haproxy leastconn", "haproxy", "leastconn"),
    ("haproxy random(2)", "haproxy", "random(2)"),
    ("nginx round-robin", "nginx", ""),
    ("nginx least_conn", "nginx", "least_conn"),
    ("nginx random two least_conn", "nginx", "random two least_conn"),
]
REF_RR, REF_HA, REF_NG = "sluice round_robin", "haproxy leastconn", "nginx least_conn"


measure_log = []             # every measurement's line, retries included

benchlib.setup("balance-quality bench")


# ---- the slow origin (run as a child: bench/balance_quality.py --serve-slow) --

def serve_slow(listen, name, delay_ms):
    """HTTP/1.1 keep-alive origin that answers every request delay_ms late.
    GET /__count answers at once with the number of requests seen (not
    counted itself). Exits on SIGTERM."""
    host, port = listen.rsplit(":", 1)
    count = [0]
    delay = delay_ms / 1000.0
    body = (name + "\n").encode()
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Origin: %s\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (name.encode(), len(body), body))

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                low = head.lower()
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", low)
                if m and int(m.group(1)):
                    await reader.readexactly(int(m.group(1)))
                if head.startswith(b"GET /__count "):
                    b = b"%d" % count[0]
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
                else:
                    count[0] += 1
                    await asyncio.sleep(delay)
                    writer.write(resp)
                await writer.drain()
                if b"\r\nconnection: close" in low:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def main():
        srv = await asyncio.start_server(handle, host, int(port), reuse_address=True, backlog=1024)
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        print("listening %s" % listen, flush=True)
        async with srv:
            await stop
    asyncio.run(main())


# ---- configs -----------------------------------------------------------------

def sluice_config(tmp, ports, origins):
    lines = ["workers: 1", "drain_timeout: 1s", "log:", "  level: warn", '  access: "off"', "",
             "listeners:"]
    for (label, prod, alg) in CONFIGS:
        if prod == "sluice":
            lines += ["  - name: %s" % alg, "    bind: 127.0.0.1:%d" % ports[label],
                      "    mode: http", "    pool: %s" % alg, "    timeouts: {client_idle: 120s}"]
    lines += ["", "pools:"]
    for (label, prod, alg) in CONFIGS:
        if prod == "sluice":
            lines += ["  - name: %s" % alg, "    balance: %s" % alg,
                      "    timeouts: {connect: 2s, upstream_response: 10s, upstream_idle: 120s}",
                      "    backends:"]
            lines += ["      - {name: %s, address: 127.0.0.1:%d}" % o for o in origins]
    path = os.path.join(tmp, "sluice.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def haproxy_config(tmp, ports, origins):
    lines = ["global", "    nbthread 1", "    maxconn 8000", "",
             "defaults", "    mode http", "    option http-keep-alive", "    http-reuse always",
             "    timeout connect 2s", "    timeout client 120s", "    timeout server 10s",
             "    timeout http-request 10s", "    timeout http-keep-alive 120s", ""]
    for i, (label, prod, alg) in enumerate(CONFIGS):
        if prod != "haproxy":
            continue
        lines += ["frontend f%d" % i, "    bind 127.0.0.1:%d" % ports[label],
                  "    default_backend b%d" % i, "",
                  "backend b%d" % i, "    balance %s" % alg]
        lines += ["    server %s 127.0.0.1:%d" % o for o in origins]
        lines.append("")
    path = os.path.join(tmp, "haproxy.cfg")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def nginx_config(ntmp, ports, origins):
    lines = ["worker_processes 1;", "worker_rlimit_nofile 20000;", "pid %s/nginx.pid;" % ntmp,
             "error_log %s/nginx-error.log warn;" % ntmp, "events { worker_connections 12000; }",
             "http {", "    access_log off;", "    keepalive_timeout 120s;",
             "    keepalive_requests 1000000;"]
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        lines.append("    %s_temp_path %s/%s_temp;" % (d, ntmp, d))
    for i, (label, prod, alg) in enumerate(CONFIGS):
        if prod != "nginx":
            continue
        lines.append("    upstream u%d {" % i)
        if alg:
            lines.append("        %s;" % alg)
        lines += ["        server 127.0.0.1:%d;" % o[1] for o in origins]
        lines += ["        keepalive 64;", "        keepalive_requests 1000000;",
                  "        keepalive_timeout 120s;", "    }",
                  "    server {", "        listen 127.0.0.1:%d;" % ports[label],
                  "        location / {", "            proxy_pass http://u%d;" % i,
                  "            proxy_http_version 1.1;", '            proxy_set_header Connection "";',
                  "            proxy_connect_timeout 2s;", "            proxy_read_timeout 10s;",
                  "        }", "    }"]
    lines.append("}")
    path = os.path.join(ntmp, "nginx.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def start_balancers(tmp, ports, origins):
    prods = {c[1] for c in CONFIGS}
    if "sluice" in prods:
        p = start("sluice", [SLUICE, "-c", sluice_config(tmp, ports, origins)], BAL_CPU, tmp)
        for label, prod, _ in CONFIGS:
            if prod == "sluice":
                wait_port(ports[label], p)
    if "haproxy" in prods:
        p = start("haproxy", [HAPROXY, "-f", haproxy_config(tmp, ports, origins), "-db"], BAL_CPU, tmp)
        for label, prod, _ in CONFIGS:
            if prod == "haproxy":
                wait_port(ports[label], p)
    if "nginx" not in prods:
        return
    ntmp = os.path.join(tmp, "nginx")
    os.mkdir(ntmp)
    cfg = nginx_config(ntmp, ports, origins)
    p = start("nginx", benchlib.nginx_argv(ntmp, cfg), BAL_CPU, tmp)
    for label, prod, _ in CONFIGS:
        if prod == "nginx":
            wait_port(ports[label], p)
    benchlib.nginx_workers(p)


# ---- origin counters ---------------------------------------------------------

def http_get(port, path, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body.decode(errors="replace")


def counts(origins, slow_port):
    """Requests seen so far by each origin, or None when an origin does not
    answer (a starved machine). sluice-origin's /stats counts itself too: the
    caller subtracts one per read between two reads."""
    out = {}
    for name, port in origins:
        for attempt in range(3):
            try:
                if port == slow_port:
                    st, body = http_get(port, "/__count", timeout=10)
                    out[name] = int(body)
                else:
                    st, body = http_get(port, "/stats", timeout=10)
                    out[name] = json.loads(body)["requests"]
                break
            except (OSError, ValueError):
                time.sleep(0.5)
        else:
            return None
    return out


# ---- load --------------------------------------------------------------------

def build_loadgen(tmp):
    exe = os.path.join(tmp, "loadgen")
    r = subprocess.run([CC, "-O2", "-o", exe, LOADGEN_C, "-lm"], capture_output=True, timeout=60)
    if r.returncode != 0:
        die("cannot build %s:\n%s" % (LOADGEN_C, r.stderr.decode(errors="replace")))
    return exe


def run_load(exe, port, mode, secs, args, name):
    if mode == "open":
        argv = [exe, str(port), "open", str(args.rate), str(secs), str(args.max_conns)]
    else:
        argv = [exe, str(port), "closed", str(args.conns), str(secs)]
    p = subprocess.Popen(["taskset", "-c", str(CLIENT_CPU)] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    so, se = benchlib.run_client(p, secs + 20, "%s: the load client" % name)
    if p.returncode != 0:
        die("%s: the load client failed (rc=%d):\n%s%s" % (name, p.returncode, so.decode(errors="replace"),
                                                          se.decode(errors="replace")))
    return json.loads(so)


def measure(exe, label, mode, port, origins, slow_port, args):
    if args.warmup > 0:
        run_load(exe, port, mode, args.warmup, args, label)
    time.sleep(args.settle)            # slow requests of the warm-up finish
    c0 = counts(origins, slow_port)
    with benchlib.Window(own_forks=1) as w:
        v = run_load(exe, port, mode, args.duration, args, label)
    disturbed = benchlib.noisy(w, MAX_FORKS)
    time.sleep(args.settle)
    c1 = counts(origins, slow_port)
    slow_name = [n for n, p in origins if p == slow_port][0]
    if c0 is not None and c1 is not None:
        seen = {n: c1[n] - c0[n] - (0 if p == slow_port else 1) for n, p in origins}
    else:
        # An origin did not answer its counter in time: fall back to what the
        # client saw (X-Origin of each answer in the measured run).
        log("  %s: origin counters unreadable, using the client's X-Origin counts" % label)
        seen = {n: v["origins"].get(n, 0) for n, p in origins}
    total = sum(seen.values())
    done = v["ok"] + v["non2xx"]
    r = dict(label=label, mode=mode, rps=done / v["window_s"], p50=v["p50_us"] / 1000.0,
             p90=v["p90_us"] / 1000.0, p99=v["p99_us"] / 1000.0, p999=v["p999_us"] / 1000.0,
             max=v["max_us"] / 1000.0, mean=v["mean_us"] / 1000.0, requests=v["started"],
             errors=v["errors"] + v["timeouts"] + v["non2xx"], seen=seen, origin_total=total,
             client_seen=v["origins"], conns=v["connections_opened"],
             slow_share=seen[slow_name] / total if total else 0.0, noisy=disturbed,
             foreign=w.foreign, forks=w.forks)
    line = ("  %-6s %-28s %7.0f req/s  p50 %7.2f  p90 %7.2f  p99 %7.2f  p99.9 %7.2f  max %7.1f ms"
            "  slow share %6.2f%%  errors %d  origins %s  client saw %s  conns %d%s" % (
                mode, label, r["rps"], r["p50"], r["p90"], r["p99"], r["p999"], r["max"],
                100 * r["slow_share"], r["errors"],
                " ".join("%s=%d" % kv for kv in sorted(seen.items())),
                " ".join("%s=%d" % kv for kv in sorted(v["origins"].items())), r["conns"],
                noise_note(w) if disturbed else ""))
    log(line)
    r["line"] = line
    measure_log.append(line)
    return r


# ---- report ------------------------------------------------------------------

def table(results):
    ref = {k: results[k]["p99"] for k in (REF_RR, REF_HA, REF_NG) if k in results}
    head = ["config", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "slow share",
            "p99 / sluice rr", "p99 / haproxy leastconn", "p99 / nginx least_conn"]
    rows = []
    for label, _, _ in CONFIGS:
        if label not in results:
            continue
        r = results[label]
        cells = [label + (" (disturbed)" if r["noisy"] else "") +
                 (" (%d errors)" % r["errors"] if r["errors"] else ""),
                 "%.0f" % r["rps"], "%.2f" % r["p50"], "%.1f" % r["p99"], "%.1f" % r["p999"],
                 "%.2f%%" % (100 * r["slow_share"])]
        for k in (REF_RR, REF_HA, REF_NG):
            cells.append("%.3f" % (r["p99"] / ref[k]) if ref.get(k) else "-")
        rows.append(cells)
    return benchlib.render_table(head, rows)


def targets(results, title):
    out = ["targets, %s (p99):" % title]
    rr = results.get(REF_RR)
    ha = results.get(REF_HA)
    ng = results.get(REF_NG)
    for alg in ("sluice ewma", "sluice p2c"):
        r = results.get(alg)
        if not r:
            continue
        if rr:
            x = rr["p99"] / r["p99"]
            out.append("  %-11s p99 %.1f ms: %.1fx lower than round_robin's %.1f ms (target >= 5x): %s" % (
                alg, r["p99"], x, rr["p99"], "met" if x >= 5 else "MISSED"))
        for ref, name in ((ha, "haproxy leastconn"), (ng, "nginx least_conn")):
            if ref:
                out.append("  %-11s p99 %.1f ms vs %s %.1f ms (target lower): %s" % (
                    alg, r["p99"], name, ref["p99"], "met" if r["p99"] < ref["p99"] else "MISSED"))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=6, help="measured seconds per config and mode (default 6)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each, not measured (default 1)")
    ap.add_argument("--modes", default="open,closed", help="open, closed or both (default both)")
    ap.add_argument("--rate", type=int, default=2000, help="open loop: requests per second offered (default 2000)")
    ap.add_argument("--max-conns", type=int, default=1000, help="open loop: most client connections (default 1000)")
    ap.add_argument("--conns", type=int, default=32, help="closed loop: connections (default 32)")
    ap.add_argument("--delay-ms", type=int, default=200, help="the slow origin's added delay (default 200)")
    ap.add_argument("--settle", type=float, default=0.5, help="pause after each load run (default 0.5 s)")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-measure a config disturbed by other processes up to N times (default 2)")
    ap.add_argument("--wait-quiet", type=float, default=60,
                    help="before each measurement, wait up to S s for other processes to calm down"
                         " (default 60; the whole run stays under %d s)" % WATCHDOG_S)
    ap.add_argument("--only", default="", help="comma-separated labels or products (default all)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--serve-slow", metavar="HOST:PORT", help=argparse.SUPPRESS)
    ap.add_argument("--name", default="b3", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_slow:
        serve_slow(args.serve_slow, args.name, args.delay_ms)
        return
    global CONFIGS
    if args.only:
        want = set(x.strip() for x in args.only.split(","))
        CONFIGS = [c for c in CONFIGS if c[0] in want or c[1] in want]
    modes = [m for m in ("open", "closed") if m in args.modes.split(",")]
    if os.cpu_count() < 2:
        die("needs 2 CPUs (balancers on CPU 0, client and origins on CPU 1)")
    benchlib.need_binaries((SLUICE, ORIGIN, HAPROXY, NGINX))
    per = args.warmup + args.duration + 2 * args.settle + 2.5
    budget = len(CONFIGS) * len(modes) * per + 30
    if budget > WATCHDOG_S - 60:
        die("this run would take about %.0fs (limit %ds): shorten --duration" % (budget, WATCHDOG_S))
    slack = [WATCHDOG_S - 30 - budget]

    benchlib.install_signals(WATCHDOG_S)
    signal.alarm(WATCHDOG_S)
    os.sched_setaffinity(0, {CLIENT_CPU})
    bg = benchlib.background_load()
    tmp = tempfile.mkdtemp(prefix="sluice-bench-bq-")
    benchlib.tmpdirs.append(tmp)
    exe = build_loadgen(tmp)
    results = {m: {} for m in modes}
    try:
        origins = []
        for i in (1, 2):
            port = free_port()
            p = start("origin-b%d" % i, [ORIGIN, "--listen", "127.0.0.1:%d" % port, "--name", "b%d" % i],
                      CLIENT_CPU, tmp)
            wait_port(port, p)
            origins.append(("b%d" % i, port))
        slow_port = free_port()
        p = start("origin-b3-slow", [PYTHON, os.path.abspath(__file__), "--serve-slow",
                                     "127.0.0.1:%d" % slow_port, "--name", "b3",
                                     "--delay-ms", str(args.delay_ms)], CLIENT_CPU, tmp)
        wait_port(slow_port, p)
        origins.append(("b3", slow_port))
        ports = {label: free_port() for label, _, _ in CONFIGS}
        start_balancers(tmp, ports, origins)
        # Every config forwards, and reaches more than one origin.
        for label, _, _ in CONFIGS:
            seen = set()
            for _ in range(6):
                st, body = http_get(ports[label], "/")
                if st != 200 or body.strip() not in ("b1", "b2", "b3"):
                    die("%s does not forward: status %d body %r" % (label, st, body[:80]))
                seen.add(body.strip())
            if len(seen) < 2:
                die("%s reached only %s" % (label, sorted(seen)))
            log("  %-28s forwards (%s)" % (label, ", ".join(sorted(seen))))
        remaining = len(modes) * len(CONFIGS)
        for mode in modes:
            for label, _, _ in CONFIGS:
                tries = []
                for attempt in range(1 + args.retries):
                    # The slack (time the run may spend waiting for a quiet
                    # machine or re-measuring) is shared fairly among the
                    # measurements still to come.
                    q = min(args.wait_quiet, max(0.0, 2 * slack[0] / remaining))
                    t = time.monotonic()
                    busy = benchlib.wait_quiet(q)
                    slack[0] -= time.monotonic() - t
                    if busy >= 0.10:
                        log("  (other processes use %.0f%% of a CPU; measuring anyway)" % (100 * busy))
                    r = measure(exe, label, mode, ports[label], origins, slow_port, args)
                    r["attempts"] = attempt + 1
                    tries.append(r)
                    if not r["noisy"] or slack[0] < per + 5 * remaining:
                        break
                    slack[0] -= per
                # An undisturbed measurement if there is one; if every try was
                # disturbed, the one with the lowest p99 (a neighbour only
                # ever adds latency, so the lowest is the closest to the truth).
                results[mode][label] = min(tries, key=lambda x: (x["noisy"], x["p99"]))
                remaining -= 1
        for p in benchlib.started:
            if p.poll() is not None:
                die("%s died during the bench:\n%s" % (p.bench_name, tail(p.bench_out)))
    finally:
        stop_all()

    now = datetime.datetime.now()
    notes = [
        "sluice balancing-quality bench (one slow backend), %s" % now.strftime("%Y-%m-%d %H:%M:%S"),
        benchlib.host_note(),
        benchlib.versions_note(with_path=True),
        "origins: b1, b2 = sluice-origin (1 thread each); b3 = asyncio HTTP/1.1 origin that answers"
        " every request %d ms late (gray failure: it would pass any health check); all on CPU %d"
        % (args.delay_ms, CLIENT_CPU),
        "balancers: one process each (sluice workers 1, haproxy nbthread 1, nginx 1 worker), one"
        " pool/backend/upstream per algorithm, all pinned to CPU %d; upstream keep-alive; no health"
        " checks; no access log" % BAL_CPU,
        "client: bench/balance_quality/loadgen.c on CPU %d, keep-alive GET /; per config and mode a"
        " %d s warm-up (not measured), then %d s measured; percentiles are raw, one sample per request"
        % (CLIENT_CPU, args.warmup, args.duration),
        "  open loop: %d req/s offered to every config (requests scheduled at fixed times; latency"
        " from the scheduled time; up to %d connections)" % (args.rate, args.max_conns),
        "  closed loop: %d connections, each sending its next request when the previous answer"
        " is complete (a faster balancer gets more req/s)" % args.conns,
        "slow share: requests counted at the origins during the measured run (b1/b2 /stats, b3 its"
        " own counter), read %.1f s after the client stops" % args.settle,
        "background load before the run: %s" % benchlib.fmt_load(bg),
        "p99 ratio columns: this row's p99 / the reference row's p99 (lower is better)",
    ]
    text = "\n".join(notes) + "\n"
    titles = {"open": "open loop, %d req/s offered" % args.rate,
              "closed": "closed loop, %d connections" % args.conns}
    for m in modes:
        text += "\n%s:\n\n%s\n\n%s\n" % (titles[m], table(results[m]), targets(results[m], titles[m]))
    if any(r["noisy"] for m in modes for r in results[m].values()):
        text += ("\nWARNING: other processes on this machine took more than %.0f%% of a CPU during"
                 " the runs marked (disturbed), even after retries.\n" % (100 * NOISE))
    print(text, flush=True)
    text += ("\nevery measurement, in order (a disturbed one was measured again while time allowed;"
             " the table keeps an undisturbed one, else the one with the lowest p99):\n" + "\n".join(measure_log) + "\n")
    benchlib.write_results(text, args.out, "balance-quality", now)
    cleanup()
    signal.alarm(0)


if __name__ == "__main__":
    # The slow origin (--serve-slow) is a child of the run: it leaves the
    # run's processes and files alone.
    benchlib.run_main(main, cleanup_after=sys.argv[1:2] != ["--serve-slow"])
