#!/usr/bin/python3
"""Basic-auth benchmark: sluice (auth) vs HAProxy (userlist, http_auth) vs
NGINX (auth_basic), the same bcrypt users file, one worker each, one run.

Configs: bench/auth/*.in, the HTTP/1.1 bench's configs (bench/http/) with
Basic authentication. The user's hash is bcrypt with --cost (default 8;
htpasswd -B makes 5, deployments often 10 or more). Balancers on CPU 0; wrk,
this script and the origin on CPU 1. A balancer's CPU is utime+stime from
/proc (every thread: sluice's hashing threads included).

Windows, per balancer, wrk -t1 -c50 keep-alive after a 1 s warm-up:
  good   every request carries the right password
  wrong  every request carries a wrong one: all are hashed and refused

Reported: req/s, requests per CPU-s and CPU per request, and the ratios.
Every load loop is bounded in time, the whole run has a watchdog.
Stdlib only (the bcrypt hash comes from Python's crypt module, libxcrypt).
Usage: bench/auth.py [--duration S] [--rounds N] [--cost N] [--only a,b]
Results: printed, and written to bench/results/auth-<date>.txt.
"""
import base64
import os
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import die, start_balancer, stop_all  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

TPL = os.path.join(HERE, "auth")
WATCHDOG_S = 290
USER, PASSWORD = "bench", "s3cret-bench"


def header(password):
    return "Authorization: Basic " + base64.b64encode(("%s:%s" % (USER, password)).encode()).decode()


def main():
    def extra_args(ap):
        ap.add_argument("--cost", type=int, default=8, help="bcrypt cost (default 8)")

    args, only = benchlib.peer_args(__doc__, "auth", extra_args)
    bg, t_run = benchlib.peer_start("auth bench", only, args.rounds * len(only) * 2 * (args.duration + 3), WATCHDOG_S, ())
    tmp = tempfile.mkdtemp(prefix="sluice-bench-auth-")
    benchlib.tmpdirs.append(tmp)
    hashed = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << args.cost))
    users = os.path.join(tmp, "users")
    with open(users, "w") as f:
        f.write("%s:%s\n" % (USER, hashed))
    # NGINX's worker runs as nobody when started as root: let it read the file.
    os.chmod(tmp, 0o755)
    os.chmod(users, 0o644)
    res = {p: {"good": [], "wrong": []} for p in only}
    lines = []
    try:
        names, ports = benchlib.start_origins(1, tmp, ["--threads", "1", "--mode", "http"])
        bals = {p: start_balancer(p, TPL, os.path.join(tmp, p), ports, USERS=users, USER=USER,
                                  HASH=hashed) for p in only}
        for b in bals.values():
            url = "http://127.0.0.1:%d/" % b.port
            for pw, want in ((PASSWORD, 200), ("wrong", 401)):
                v = benchlib.wrk_window(url, 1, [header(pw)], conns=1)
                if (want == 200) != (v["refused"] == 0) or v["requests"] == 0:
                    die("%s: %s password: %d requests, %d refused" % (
                        b.name, "right" if want == 200 else "wrong", v["requests"], v["refused"]))
        res, lines = benchlib.peer_rounds(bals, only, args.rounds, args.duration,
                                          (("good", [header(PASSWORD)]), ("wrong", [header("wrong")])))
    finally:
        stop_all()

    head, rows = benchlib.peer_table(res, only, (("good", "right password"), ("wrong", "wrong password (all 401)")),
                                     (("rps", "req/s", "%.0f"), ("per_cpu", "requests per CPU-s", "%.0f"),
                                     ("cpu_us", "CPU us per request", "%.1f")))
    benchlib.peer_report("auth", "auth", t_run, bg, args, [
        "balancers pinned to CPU 0 (one worker each); wrk -t1 -c50 keep-alive and 1 sluice-origin on CPU 1",
        "configs: bench/auth/*.in (the HTTP bench's plus Basic auth); one user, bcrypt cost %d" % args.cost,
    ], head, rows, lines)


if __name__ == "__main__":
    benchlib.run_main(main)
