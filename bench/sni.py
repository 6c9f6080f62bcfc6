#!/usr/bin/python3
"""SNI routing benchmark: TLS passed through and routed on the ClientHello's
server name, sluice (a tcp listener's routes) vs HAProxy (req.ssl_sni after
tcp-request inspect-delay) vs NGINX (stream, ssl_preread and a map), one
worker each, one run.

Configs: bench/sni/*.in. The origins are one NGINX worker terminating TLS
on two ports (bench/sni/origin.conf.in, an ECDSA P-256 certificate for
api.test and www.test made by the openssl command for the run). Balancers on
CPU 0; the client (h2load), this script and the origins on CPU 1. A
balancer's CPU is utime+stime from /proc.

Windows, per balancer and server name, after a warm-up: h2load --h1 runs of
100 clients making one request each on a new TLS connection, repeated for
--duration seconds; --connect-to sends them to the balancer while the URL's
host is the server name:
  api    https://api.test/  (the route's pool)
  other  https://www.test/  (no route matches: the listener's pool)
Each answer says which origin it came from, and must be the right one.

Reported: connections per second, connections per balancer CPU-s and CPU us
per connection, and the ratios. Every load loop is bounded in time, the
whole run has a watchdog. Usage: bench/sni.py [--duration S] [--rounds N]
[--only a,b]. Results: printed, and written to bench/results/sni-<date>.txt.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import (CLIENT_CPU, Window, die, log, noisy,  # noqa: E402
                      start_balancer, stop_all)

TPL = os.path.join(HERE, "sni")
OPENSSL = benchlib.OPENSSL
H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"
WATCHDOG_S = 290
CLIENTS = 100
NAMES = (("api", "api.test", "api"), ("other", "www.test", "web"))


def h2load(port, host):
    """One h2load run: CLIENTS new TLS connections, one request each.
    Returns the requests that succeeded (h2load counts statuses only: which
    origin answered is checked by reaches(), before and after the windows)."""
    r = subprocess.run(["taskset", "-c", str(CLIENT_CPU), H2LOAD, "--h1", "-n", str(CLIENTS),
                        "-c", str(CLIENTS), "-t", "1", "--connect-to", "127.0.0.1:%d" % port,
                        "https://%s/" % host], capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if r.returncode != 0 or not m:
        die("h2load failed (rc=%d):\n%s%s" % (r.returncode, out, r.stderr.decode(errors="replace")))
    return int(m.group(1))


def reaches(port, host, want):
    r = subprocess.run([benchlib.CURL, "-sk", "--max-time", "5", "--connect-to",
                        "%s:443:127.0.0.1:%d" % (host, port), "https://%s/" % host],
                       capture_output=True, timeout=10)
    if r.stdout.strip() != want.encode():
        die("https://%s/ through port %d answered %r, not %r" % (host, port, r.stdout[:80], want))


def window(b, host, secs):
    w = Window(b)
    conns = runs = 0
    with w:
        end = time.monotonic() + secs
        t0 = time.monotonic()
        while time.monotonic() < end:
            conns += h2load(b.port, host)
            runs += 1
        elapsed = time.monotonic() - t0
        w.own_forks = 2 * runs      # an h2load run is ours: a process and its thread
    return dict(conns=conns, cps=conns / elapsed, cpu_us=1e6 * w.cpu / conns if conns else 0,
                per_cpu=conns / w.cpu if w.cpu else 0, noisy=noisy(w, 10))


def main():
    args, only = benchlib.peer_args(__doc__, "sni")
    bg, t_run = benchlib.peer_start("sni bench", only, args.rounds * len(only) * 2 * (args.duration + 3),
                                    WATCHDOG_S, [OPENSSL, H2LOAD])
    tmp = tempfile.mkdtemp(prefix="sluice-bench-sni-")
    benchlib.tmpdirs.append(tmp)
    res = {p: {t: [] for t, _, _ in NAMES} for p in only}
    lines = []
    try:
        cert, key, _ = benchlib.make_cert(tmp, ["api.test", "www.test"])
        api, web = "127.0.0.1:%d" % benchlib.free_port(), "127.0.0.1:%d" % benchlib.free_port()
        otmp = os.path.join(tmp, "origin")
        os.makedirs(otmp)
        cfg = benchlib.render(TPL, "origin.conf", otmp, CERT=cert, KEY=key, API=api, WEB=web)
        o = benchlib.start("origin", benchlib.nginx_argv(otmp, cfg), CLIENT_CPU, tmp)
        benchlib.wait_port(int(web.rsplit(":", 1)[1]), o)
        benchlib.nginx_workers(o)
        bals = {p: start_balancer(p, TPL, os.path.join(tmp, p), [], API=api, WEB=web) for p in only}
        for b in bals.values():
            for _, host, want in NAMES:
                reaches(b.port, host, want)
                h2load(b.port, host)                  # warm-up
        for rnd in range(args.rounds):
            order = only[rnd % len(only):] + only[:rnd % len(only)]
            for t, host, _ in NAMES:
                for p in order:
                    r = window(bals[p], host, args.duration)
                    res[p][t].append(r)
                    line = "  [round %d] %-7s %-5s %7.0f conn/s  %7.1f us CPU/conn  %7.0f conn/CPU-s%s" % (
                        rnd + 1, p, t, r["cps"], r["cpu_us"], r["per_cpu"],
                        "  DISTURBED" if r["noisy"] else "")
                    log(line)
                    lines.append(line)
        for p, b in bals.items():
            if b.proc.poll() is not None:
                die("%s died during the bench" % p)
            for _, host, want in NAMES:
                reaches(b.port, host, want)
    finally:
        stop_all()

    head, rows = benchlib.peer_table(res, only, (("api", "server name routed (api.test)"),
                                                 ("other", "no route matches (www.test)")),
                                     (("cps", "connections/s", "%.0f"),
                                      ("per_cpu", "connections per CPU-s", "%.0f"),
                                      ("cpu_us", "CPU us per connection", "%.1f")))
    benchlib.peer_report("sni", "SNI", t_run, bg, args, [
        "balancers pinned to CPU 0 (one worker each); h2load --h1 (%d new TLS connections per run, "
        "one request each), this script and the NGINX TLS origins on CPU 1" % CLIENTS,
        "configs: bench/sni/*.in; TLS is terminated by the origins only",
    ], head, rows, lines)


if __name__ == "__main__":
    benchlib.run_main(main)
