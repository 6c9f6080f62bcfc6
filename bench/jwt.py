#!/usr/bin/python3
"""JWT benchmark: sluice (auth type jwt) vs HAProxy (jwt_verify), the same
RS256 token and RSA public key, one worker each, one run. NGINX has no JWT
check outside NGINX Plus, so it is not in this one.

Configs: bench/jwt/*.in, the HTTP/1.1 bench's configs (bench/http/) with the
token checked (alg, signature, iss). Balancers on CPU 0; wrk, this script and
the origin on CPU 1. A balancer's CPU is utime+stime from /proc.

Windows, per balancer, wrk -t1 -c50 keep-alive after a 1 s warm-up:
  good  every request carries a valid RS256 token
  bad   every request carries one whose signature does not match (401)

Reported: req/s, requests per CPU-s and CPU per request, and the ratio.
Every load loop is bounded in time, the whole run has a watchdog.
Usage: bench/jwt.py [--duration S] [--rounds N] [--only a,b]
Results: printed, and written to bench/results/jwt-<date>.txt.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import die, start_balancer, stop_all  # noqa: E402

TPL = os.path.join(HERE, "jwt")
OPENSSL = benchlib.OPENSSL
WATCHDOG_S = 290


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def rs256_token(priv, claims):
    data = ("%s.%s" % (b64u(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()),
                       b64u(json.dumps(claims).encode()))).encode()
    sig = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", priv], input=data,
                         capture_output=True, check=True, timeout=30).stdout
    return data.decode() + "." + b64u(sig)


def main():
    args, only = benchlib.peer_args(__doc__, "jwt")
    only = [p for p in only if p != "nginx"]
    if not only:
        die("nothing to do: NGINX has no JWT check to compare")
    bg, t_run = benchlib.peer_start("jwt bench", only, args.rounds * len(only) * 2 * (args.duration + 3),
                                    WATCHDOG_S, [OPENSSL])
    tmp = tempfile.mkdtemp(prefix="sluice-bench-jwt-")
    benchlib.tmpdirs.append(tmp)
    priv, pub = os.path.join(tmp, "key.pem"), os.path.join(tmp, "pub.pem")
    subprocess.run([OPENSSL, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", priv], check=True, capture_output=True, timeout=60)
    subprocess.run([OPENSSL, "pkey", "-in", priv, "-pubout", "-out", pub], check=True,
                   capture_output=True, timeout=30)
    good = rs256_token(priv, {"sub": "bench", "iss": "bench", "exp": int(time.time()) + 3600})
    h, p, s = good.split(".")
    bad = "%s.%s.%s" % (h, p, s[:-4] + ("AAAA" if s[-4:] != "AAAA" else "BBBB"))
    res = {p: {"good": [], "bad": []} for p in only}
    lines = []
    try:
        names, ports = benchlib.start_origins(1, tmp, ["--threads", "1", "--mode", "http"])
        bals = {p: start_balancer(p, TPL, os.path.join(tmp, p), ports, PUB=pub) for p in only}
        for b in bals.values():
            url = "http://127.0.0.1:%d/" % b.port
            for tok, ok in ((good, True), (bad, False)):
                v = benchlib.wrk_window(url, 1, ["Authorization: Bearer " + tok], conns=1)
                if ok != (v["refused"] == 0) or v["requests"] == 0:
                    die("%s: %s token: %d requests, %d refused" % (
                        b.name, "good" if ok else "bad", v["requests"], v["refused"]))
        res, lines = benchlib.peer_rounds(bals, only, args.rounds, args.duration,
                                          (("good", ["Authorization: Bearer " + good]), ("bad", ["Authorization: Bearer " + bad])))
    finally:
        stop_all()
    head, rows = benchlib.peer_table(res, only, (("good", "valid RS256 token"),
                                                 ("bad", "bad signature (all 401)")),
                                     (("rps", "req/s", "%.0f"), ("per_cpu", "requests per CPU-s", "%.0f"),
                                      ("cpu_us", "CPU us per request", "%.1f")))
    benchlib.peer_report("jwt", "JWT", t_run, bg, args, [
        "balancers pinned to CPU 0 (one worker each); wrk -t1 -c50 keep-alive and 1 sluice-origin on CPU 1",
        "configs: bench/jwt/*.in (the HTTP bench's plus an RS256 check of alg, signature and iss); "
        "NGINX OSS has no JWT check",
    ], head, rows, lines)


if __name__ == "__main__":
    benchlib.run_main(main)
