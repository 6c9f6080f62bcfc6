#!/usr/bin/python3
"""TLS benchmark: sluice vs HAProxy (bind ... ssl crt) vs NGINX (listen ... ssl),
HTTPS in front of the same plain-HTTP origin, one worker each, one run.

Configs: bench/tls/*.in, the HTTP/1.1 bench's configs (bench/http/) with TLS
on the listener and one ECDSA P-256 certificate made by the openssl command
for the run. Balancers on CPU 0; wrk, this script and the origin on CPU 1. A
balancer's CPU is utime+stime from /proc.

Windows, per balancer, after a 1 s warm-up:
  keepalive  wrk -t1 -c50 over HTTPS keep-alive connections: the cost of
             TLS records on top of HTTP.
  close      the same with Connection: close: a TLS handshake per request
             (full or resumed, as wrk and the server agree: the same client
             against all three).

Reported: requests per balancer CPU-s and CPU us per request, and the ratios.
Every load loop is bounded in time, the whole run has a watchdog.
Stdlib only. Usage: bench/tls.py [--duration S] [--rounds N] [--only a,b]
Results: printed, and written to bench/results/tls-<date>.txt.
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import CURL, die, log, start_balancer, stop_all  # noqa: E402

TPL = os.path.join(HERE, "tls")
OPENSSL = benchlib.OPENSSL
WATCHDOG_S = 290


def https_reaches(b, cert):
    r = subprocess.run([CURL, "-sS", "--max-time", "5", "--cacert", cert, "--resolve",
                        "bench.test:%d:127.0.0.1" % b.port, "https://bench.test:%d/" % b.port],
                       capture_output=True, timeout=10)
    if r.returncode != 0 or r.stdout.strip() != b"b1":
        die("%s does not serve HTTPS: rc=%d %r %r" % (b.name, r.returncode, r.stdout[:80], r.stderr[:200]))


def main():
    args, only = benchlib.peer_args(__doc__, "tls")
    bg, t_run = benchlib.peer_start("tls bench", only, args.rounds * len(only) * 2 * (args.duration + 3), WATCHDOG_S, [OPENSSL])
    tmp = tempfile.mkdtemp(prefix="sluice-bench-tls-")
    benchlib.tmpdirs.append(tmp)
    res = {p: {"keepalive": [], "close": []} for p in only}
    lines = []
    try:
        cert, key, both = benchlib.make_cert(tmp, ["bench.test"])
        names, ports = benchlib.start_origins(1, tmp, ["--threads", "1", "--mode", "http"])
        bals = {p: start_balancer(p, TPL, os.path.join(tmp, p), ports, CERT=cert, KEY=key, PEM=both)
                for p in only}
        for b in bals.values():
            https_reaches(b, cert)
        for rnd in range(args.rounds):
            order = only[rnd % len(only):] + only[:rnd % len(only)]
            for t in ("keepalive", "close"):
                for p in order:
                    r = benchlib.measured_wrk(bals[p], "https://127.0.0.1:%d/" % bals[p].port,
                                              args.duration,
                                              ["Connection: close"] if t == "close" else ())
                    r["errors"] += r["refused"]
                    res[p][t].append(r)
                    line = "  [round %d] %-7s %-9s %7.0f req/s  %6.1f us CPU/req  %7.0f req/CPU-s  errors %d%s" % (
                        rnd + 1, p, t, r["rps"], r["cpu_us"], r["per_cpu"], r["errors"],
                        "  DISTURBED" if r["noisy"] else "")
                    log(line)
                    lines.append(line)
        for p, b in bals.items():
            if b.proc.poll() is not None:
                die("%s died during the bench" % p)
            https_reaches(b, cert)
    finally:
        stop_all()

    head, rows = benchlib.peer_table(res, only, (("keepalive", "HTTPS keep-alive"), ("close", "HTTPS, a TLS connection per request")),
                                     (("per_cpu", "requests per CPU-s", "%.0f"), ("rps", "req/s", "%.0f"),
                                     ("cpu_us", "CPU us per request", "%.1f")))
    benchlib.peer_report("tls", "TLS", t_run, bg, args, [
        "balancers pinned to CPU 0 (one worker each); wrk -t1 -c50 over HTTPS and 1 sluice-origin on CPU 1",
        "configs: bench/tls/*.in (the HTTP bench's plus TLS, one ECDSA P-256 certificate)",
    ], head, rows, lines)


if __name__ == "__main__":
    benchlib.run_main(main)
