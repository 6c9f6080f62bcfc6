#!/usr/bin/python3
"""HTTP/2 benchmark: sluice (http2: true) vs HAProxy (bind ... proto h2) vs
NGINX (listen ... http2) as cleartext HTTP/2 front ends ("h2c", prior
knowledge) proxying each stream as HTTP/1.1 to the same origins over upstream
keep-alive connections, one worker each, one run.

Configs: bench/http2/*.in, the HTTP/1.1 bench's configs (bench/http/) with
HTTP/2 on the listener. 3 sluice-origin processes, round robin over them.
Balancers on CPU 0; h2load (-t 1), this script and the origins on CPU 1. A
balancer's CPU is utime+stime from /proc (all its threads; for nginx master +
worker), sampled just before and just after each measurement window.

Windows, per balancer, each after a 1 s h2load warm-up run (a separate run, as
the wrk benches warm up: h2load's own --warm-up-time would leave the warm-up's
requests out of the count but not its CPU out of the window):
  streams  h2load -c 10 -m 10: 10 connections, 10 concurrent streams on each,
           the multiplexing case (100 requests in flight).
  conns    h2load -c 50 -m 1: 50 connections, one stream at a time on each,
           the same 50-in-flight shape as the wrk -c50 HTTP/1.1 windows.

Reported: req/s, requests per balancer CPU-s, CPU us per request, failed and
errored requests (h2load's counts, summed over the rounds), and the ratios
sluice/haproxy and sluice/nginx. Any failed, errored or timed-out request or
non-2xx answer, in a warm-up or a window, ends the run with an error, and so
does a balancer that does not answer HTTP/2 (curl --http2-prior-knowledge must
report version 2 and reach every origin) before and after the windows.

With --upstream h2 the bench is gRPC-shaped: HTTP/2 on both sides. The
balancers speak HTTP/2 to the origins too (configs: bench/grpc/*.in: sluice
`http2: true` on the pool, HAProxy `server ... proto h2`, NGINX
`grpc_pass`), the origins are one NGINX worker serving cleartext HTTP/2
on each origin port and answering as a gRPC server shapes it
(application/grpc, a short body, trailer grpc-status: 0), and h2load sends
requests with gRPC's fields (content-type application/grpc, te: trailers)
but no body: NGINX's grpc_pass fails when an NGINX origin answers before
reading a request body.
Results then go to bench/results/grpc-<date>.txt.

Every load loop is bounded in time, the whole run has a watchdog.
Stdlib only. Needs h2load (Debian package nghttp2-client; H2LOAD_BIN).
Usage: bench/http2.py [--upstream h1|h2] [--duration S] [--rounds N] [--only a,b]
Results: printed, and written to bench/results/http2-<date>.txt.
"""
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import CLIENT_CPU, CURL, Window, die, log, render_table, start_balancer, stop_all  # noqa: E402

TPL = os.path.join(HERE, "http2")
TPL_H2 = os.path.join(HERE, "grpc")
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
H2LOAD = os.environ.get("H2LOAD_BIN", "/usr/bin/h2load")
WATCHDOG_S = 290
ORIGINS = 3
WINDOWS = (("streams", 10, 10), ("conns", 50, 1))     # (name, connections, streams per connection)
SECTIONS = (("streams", "h2c -c10 -m10"), ("conns", "h2c -c50 -m1"))

REQ_RE = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
STATUS_RE = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
FINISHED_RE = re.compile(r"^finished in ([\d.]+)(m?s), ([\d.]+) req/s", re.M)


def last_lines(text, n=20):
    return "\n".join(text.splitlines()[-n:]) + "\n"


def h2load_window(url, secs, conns, streams, window=None, extra=()):
    """h2load -D secs -c CONNS -m STREAMS -t 1 against url on CPU CLIENT_CPU,
    inside `window` (a Window) if given. Returns its counts as a dict: done,
    succeeded, failed, errored, timeout, refused (non-2xx answers), rps (h2load's
    req/s over the -D duration) and secs. Dies on any failed, errored or
    timed-out request or non-2xx answer."""
    argv = ["taskset", "-c", str(CLIENT_CPU), H2LOAD, "-D", str(secs), "-c", str(conns),
            "-m", str(streams), "-t", "1"] + list(extra) + [url]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    so, se = benchlib.run_client(p, secs + 30, "h2load", window)
    out = so.decode(errors="replace")
    mr, ms, mf = REQ_RE.search(out), STATUS_RE.search(out), FINISHED_RE.search(out)
    if p.returncode != 0 or not (mr and ms and mf):
        die("h2load failed (rc=%d): %s\n%s%s" % (p.returncode, " ".join(argv[3:]),
                                                 last_lines(out), se.decode(errors="replace")))
    total, started, done, succeeded, failed, errored, timeout = (int(x) for x in mr.groups())
    s2, s3, s4, s5 = (int(x) for x in ms.groups())
    v = dict(total=total, started=started, done=done, succeeded=succeeded, failed=failed,
             errored=errored, timeout=timeout, refused=s3 + s4 + s5, rps=float(mf.group(3)), secs=float(secs))
    # Non-2xx answers are counted from the status codes, not as done - 2xx: at the
    # end of -D, a response whose HEADERS came in is counted by status but not
    # yet as done, so the 2xx count can run one or two ahead of done.
    if failed or errored or timeout or v["refused"]:
        die("h2load against %s: %d failed, %d errored, %d timeout, status codes %d 2xx %d 3xx %d 4xx"
            " %d 5xx of %d done (%s)" % (url, failed, errored, timeout, s2, s3, s4, s5, done,
                                         " ".join(argv[3:])))
    if not done:
        die("h2load against %s: no request done (%s)\n%s" % (url, " ".join(argv[3:]),
                                                            last_lines(out)))
    return v


def measured_h2load(b, url, secs, conns, streams, warmup=1, settle=0.0, extra=()):
    """measured_wrk()'s equivalent for h2load: a warm-up run (then settle
    seconds of quiet), then one h2load window on balancer b: requests, req/s,
    failed, errored, the balancer's CPU per request and requests per CPU-s,
    and whether other processes disturbed the window."""
    if warmup:
        h2load_window(url, warmup, conns, streams, extra=extra)
    time.sleep(settle)
    w = Window(b)
    v = h2load_window(url, secs, conns, streams, window=w, extra=extra)
    reqs = v["done"]
    return dict(reqs=reqs, rps=v["rps"], secs=v["secs"], refused=v["refused"], failed=v["failed"],
                errored=v["errored"], cpu=w.cpu, cpu_us=1e6 * w.cpu / reqs if reqs else 0,
                per_cpu=reqs / w.cpu if w.cpu else 0, noisy=benchlib.noisy(w, 10), window=w)


def h2_reaches(b, names):
    """2 x len(names) curl requests over cleartext HTTP/2 (prior knowledge)
    through balancer b: each must be answered as HTTP/2 by one of the
    origins, and every origin must answer."""
    seen = set()
    for _ in range(2 * len(names)):
        r = subprocess.run([CURL, "-sS", "--max-time", "5", "--http2-prior-knowledge",
                            "-w", "\n%{http_version}", "http://127.0.0.1:%d/" % b.port],
                           capture_output=True, timeout=10)
        body, _, ver = r.stdout.decode(errors="replace").rpartition("\n")
        body = body.strip()
        if r.returncode != 0 or ver.strip() != "2" or body not in names:
            die("%s does not proxy HTTP/2 (h2c): curl rc=%d http_version=%r body=%r err=%r" % (
                b.name, r.returncode, ver.strip(), body[:80], r.stderr.decode(errors="replace")[:200]))
        seen.add(body)
    if seen != set(names):
        die("%s reached only %s of %s" % (b.name, sorted(seen), names))


def start_h2_origins(n, tmp):
    """n cleartext HTTP/2 origins b1..bn: one NGINX worker on CPU CLIENT_CPU
    with a server per port, each answering its name gRPC-style."""
    names, ports = ["b%d" % (i + 1) for i in range(n)], [benchlib.free_port() for _ in range(n)]
    servers = "".join(
        "\n    server {\n        listen 127.0.0.1:%d http2;\n        location / {\n"
        "            add_trailer grpc-status 0;\n            default_type application/grpc;\n"
        "            return 200 \"%s\\n\";\n        }\n    }\n" % (port, name)
        for name, port in zip(names, ports))
    ntmp = os.path.join(tmp, "origin-nginx")
    os.makedirs(ntmp, exist_ok=True)
    cfg = benchlib.render(TPL_H2, "origin-nginx.conf", ntmp, ORIGIN_SERVERS=servers)
    p = benchlib.start("origin-nginx", benchlib.nginx_argv(ntmp, cfg), CLIENT_CPU, tmp)
    for port in ports:
        benchlib.wait_port(port, p)
    benchlib.nginx_workers(p)
    log("http2 bench: HTTP/2 origins %s (one nginx worker) on CPU %d" % (
        ", ".join("%s=%d" % x for x in zip(names, ports)), CLIENT_CPU))
    return names, ports


def main():
    def extra(ap):
        ap.add_argument("--upstream", choices=("h1", "h2"), default="h1",
                        help="what the balancers speak to the origins (h2: the gRPC-shaped bench)")
    args, only = benchlib.peer_args(__doc__, "http2", extra)
    h2up = args.upstream == "h2"
    benchlib.setup("http2 bench")
    if not os.access(H2LOAD, os.X_OK):
        die("missing %s (Debian package nghttp2-client; or set H2LOAD_BIN)" % H2LOAD)
    bg, t_run = benchlib.peer_start("http2 bench", only,
                                    args.rounds * len(only) * len(WINDOWS) * (args.duration + 3),
                                    WATCHDOG_S, [H2LOAD])
    tmp = tempfile.mkdtemp(prefix="sluice-bench-h2-")
    benchlib.tmpdirs.append(tmp)
    res = {p: {t: [] for t, _, _ in WINDOWS} for p in only}
    lines = []
    load = sum((("-H", h) for h in GRPC_HEADERS), ()) if h2up else ()
    try:
        if h2up:
            names, ports = start_h2_origins(ORIGINS, tmp)
        else:
            names, ports = benchlib.start_origins(ORIGINS, tmp, ["--threads", "1", "--mode", "http"])
        bals = {p: start_balancer(p, TPL_H2 if h2up else TPL, os.path.join(tmp, p), ports,
                                  haproxy_server_opts=" proto h2" if h2up else "") for p in only}
        for b in bals.values():
            h2_reaches(b, names)
        for rnd in range(args.rounds):
            order = only[rnd % len(only):] + only[:rnd % len(only)]
            for t, conns, streams in WINDOWS:
                for p in order:
                    r = measured_h2load(bals[p], "http://127.0.0.1:%d/" % bals[p].port,
                                        args.duration, conns, streams, extra=load)
                    res[p][t].append(r)
                    line = ("  [round %d] %-7s %-7s %8.0f req/s  %6.1f us CPU/req  %7.0f req/CPU-s  "
                            "failed %d  errored %d%s" % (
                                rnd + 1, p, t, r["rps"], r["cpu_us"], r["per_cpu"], r["failed"],
                                r["errored"], benchlib.noise_note(r["window"]) if r["noisy"] else ""))
                    log(line)
                    lines.append(line)
        for p, b in bals.items():
            if b.proc.poll() is not None:
                die("%s died during the bench" % p)
            h2_reaches(b, names)
    finally:
        stop_all()

    head, rows = benchlib.peer_table(res, only, SECTIONS,
                                     (("per_cpu", "requests per CPU-s", "%.0f"), ("rps", "req/s", "%.0f"),
                                      ("cpu_us", "CPU us per request", "%.1f")))
    npeers = len(head) - 1 - len(only)
    for key, what in (("failed", "failed requests"), ("errored", "errored requests")):
        rows.append(["all windows: %s (sum)" % what] +
                    ["%d" % sum(r[key] for t, _, _ in WINDOWS for r in res[p][t]) for p in only] +
                    ["-"] * npeers)
    disturbed = sum(r["noisy"] for p in only for t, _, _ in WINDOWS for r in res[p][t])
    notes = [
        "sluice %s bench, %s (run took %.0fs)" % ("gRPC-shaped (HTTP/2 both sides)" if h2up else "HTTP/2",
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), time.monotonic() - t_run),
        benchlib.host_note(), benchlib.versions_note(), "client: %s" % benchlib.version([H2LOAD, "--version"]),
        "balancers pinned to CPU 0 (one worker each); h2load -t1 (cleartext HTTP/2, prior knowledge)"
        " and %s on CPU 1" % ("%d HTTP/2 origins (one nginx worker, gRPC-shaped answers)" % ORIGINS if h2up
                              else "%d sluice-origin (--threads 1, HTTP/1.1)" % ORIGINS),
        "background load before the run: %s" % benchlib.fmt_load(bg),
        ("configs: bench/grpc/*.in (HTTP/2 to the origins: sluice http2 pool, HAProxy proto h2, NGINX"
         " grpc_pass); h2load sends content-type application/grpc and te: trailers, no body"
         if h2up else
         "configs: bench/http2/*.in (the HTTP bench's plus HTTP/2 on the listener; HTTP/1.1 keep-alive upstream)"),
        "windows: streams = h2load -c10 -m10, conns = h2load -c50 -m1; each after a 1 s warm-up run",
        "median of %d rounds, %ds windows, order rotated per round" % (args.rounds, args.duration),
    ]
    text = "\n".join(notes) + "\n\n" + render_table(head, rows) + "\n"
    if disturbed:
        text += ("\nWARNING: other processes on this machine took more than %.0f%% of a CPU during %d"
                 " measurement window(s); those numbers are not trustworthy. Run again on an idle"
                 " machine.\n" % (100 * benchlib.NOISE, disturbed))
    text += "\nper window:\n" + "\n".join(lines) + "\n"
    print(text)
    benchlib.write_results(text, args.out, "grpc" if h2up else "http2", datetime.datetime.now())


if __name__ == "__main__":
    benchlib.run_main(main)
