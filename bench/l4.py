#!/usr/bin/python3
"""L4 benchmark: sluice vs HAProxy (mode tcp, splice) vs NGINX (stream).

One run, same origins, same client, one worker each. The balancers are pinned
to CPU 0; the client (this script, wrk) and the origins to CPU 1. A balancer's
CPU is utime+stime from /proc/PID/stat (all its threads; for nginx master +
worker), sampled just before and just after each measurement window.

Measures
  download   N parallel connections stream GET /bytes/HUGE from the origins
             through the balancer; the client discards with recv(MSG_TRUNC)
             (no copy), for a fixed window: GB/s and balancer CPU-s per GB.
  upload     N parallel connections stream POST /upload (huge Content-Length)
             to the origins: GB/s and CPU-s per GB.
  connect    wrk, Connection: close: every request is a new client connection
             and a new backend connection: conn/s and conn per CPU-second.

Each test runs for every balancer in every round (order rotated per round);
the table shows medians, preferring windows that no other process on the
machine disturbed (a disturbed window is measured again while time allows).
Every load loop is bounded in time; the whole run also has a watchdog.
Stdlib only. Usage: bench/l4.py [--rounds N] [--duration S] [--only a,b] ...
Results: printed, and written to bench/results/l4-<date>.txt.
BENCH_UPLOAD=sendfile makes the upload client send from tmpfs (no copy).
The process, /proc, noise and report helpers are in bench/benchlib.py, shared
with the other drivers.
"""
import argparse
import datetime
import os
import re
import selectors
import signal
import statistics
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
from benchlib import (BAL_CPU, CLIENT_CPU, CURL, HAPROXY, NGINX, ORIGIN, ROOT, SLUICE, WRK,  # noqa: E402
                      Window, cleanup, die, log, noise_note, noisy, render_table, start_balancer,
                      stop_all, tail)

TPL = os.path.join(ROOT, "bench", "l4")
PIPESIZE = 262144            # haproxy tune.pipesize; sluice asks for 256 KiB pipes
HUGE = 1 << 50               # "endless" body: the window ends the transfer
WATCHDOG_S = 250             # with the quiet wait, the bench stays under 5 minutes
PROXIES = ("sluice", "haproxy", "nginx")

benchlib.setup("l4 bench")


# ---- checks ----------------------------------------------------------------

def check_forwarding(bals, names):
    """A few plain requests through each balancer: the answer must be an
    origin's name, every origin must be reached, and a 1 MB body must arrive
    whole."""
    for b in bals.values():
        seen = benchlib.curl_reaches(b, names, "forward")
        r = subprocess.run([CURL, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{size_download}",
                            "http://127.0.0.1:%d/bytes/1000000" % b.port],
                           capture_output=True, timeout=15)
        if r.returncode != 0 or r.stdout.strip() != b"1000000":
            die("%s: /bytes/1000000 came back as %r (curl rc=%d)" % (b.name, r.stdout, r.returncode))
        log("  %-8s forwards to %s" % (b.name, ", ".join(sorted(seen))))


# ---- load: bulk ------------------------------------------------------------

def bulk(bal, conns, warmup, duration, upload):
    """Stream through `conns` connections for warmup+duration seconds; return
    (bytes in the window, Window)."""
    sel = selectors.DefaultSelector()
    socks = []
    if upload:
        req = ("POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n"
               "Connection: close\r\n\r\n" % HUGE).encode()
        if UPLOAD_SEND:
            chunk = memoryview(bytes(range(256)) * 4096)
        else:
            src = upload_source()
            offs = {}
    else:
        req = ("GET /bytes/%d HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % HUGE).encode()
        sink = bytearray(4 << 20)
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", bal.port), timeout=5)
        s.sendall(req)
        if not upload:
            head = b""
            while b"\r\n\r\n" not in head:
                d = s.recv(4096)
                if not d:
                    die("%s: connection closed before the response head" % bal.name)
                head += d
            if not head.startswith(b"HTTP/1.1 200"):
                die("%s: unexpected response %r" % (bal.name, head[:60]))
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE if upload else selectors.EVENT_READ)

    total = 0
    win = None
    t_start = time.monotonic()
    t_measure = t_start + warmup
    t_end = t_measure + duration
    flags = socket.MSG_TRUNC
    try:
        while True:
            now = time.monotonic()
            if win is None and now >= t_measure:
                win = Window(bal).__enter__()
                total = 0
            if now >= t_end:
                break
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    if upload and UPLOAD_SEND:
                        n = s.send(chunk)
                    elif upload:
                        # sendfile from a tmpfs file: the client copies nothing.
                        off = offs.get(s, 0)
                        n = os.sendfile(s.fileno(), src, off, UPLOAD_FILE - off)
                        offs[s] = (off + n) % UPLOAD_FILE
                    else:
                        n = s.recv_into(sink, len(sink), flags)
                        if n == 0:
                            die("%s: stream ended early (EOF from the balancer)" % bal.name)
                except BlockingIOError:
                    continue
                except OSError as e:
                    die("%s: %s during %s" % (bal.name, e, "upload" if upload else "download"))
                total += n
        win.__exit__(None, None, None)
    finally:
        for s in socks:
            sel.unregister(s)
            s.close()
        sel.close()
    return total, win


UPLOAD_FILE = 64 << 20
UPLOAD_SEND = os.environ.get("BENCH_UPLOAD", "send") == "send"
_upload_fd = []


def upload_source():
    """A 64 MiB file in tmpfs that upload connections send in a loop."""
    if not _upload_fd:
        d = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        fd, path = tempfile.mkstemp(prefix="sluice-bench-l4-", dir=d)
        os.unlink(path)
        block = bytes(range(256)) * 4096
        for _ in range(UPLOAD_FILE // len(block)):
            os.write(fd, block)
        _upload_fd.append(fd)
    return _upload_fd[0]


# ---- load: new connections ---------------------------------------------------

def connect_rate(bal, conns, warmup, duration):
    url = "http://127.0.0.1:%d/" % bal.port
    base = ["taskset", "-c", str(CLIENT_CPU), WRK, "-t1", "-c%d" % conns,
            "-H", "Connection: close", "--timeout", "2s"]
    if warmup > 0:   # wrk takes whole seconds
        subprocess.run(base + ["-d%ds" % max(1, round(warmup)), url], capture_output=True,
                       timeout=warmup + 30)
    p = subprocess.Popen(base + ["-d%ds" % max(1, round(duration)), url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    win = Window(bal)
    so, se = benchlib.run_client(p, duration + 30, "%s: wrk" % bal.name, win)
    r = subprocess.CompletedProcess(p.args, p.returncode, so, se)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if r.returncode != 0 or not m:
        die("%s: wrk failed (rc=%d):\n%s%s" % (bal.name, r.returncode, out, r.stderr.decode()))
    reqs = int(m.group(1))
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    errs = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errs += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errs += int(m.group(1))
    return reqs, secs, errs, win


# ---- report ----------------------------------------------------------------

measure_log = []
MAX_FORKS = 10          # a window is disturbed when more processes than this started during it
retry_slack = [0.0]     # seconds of the watchdog's budget left over for re-measuring


def measure(b, t, args, rnd):
    """One measurement of test t through balancer b."""
    for attempt in range(1 + args.retries):
        r, w, line = measure_once(b, t, args, rnd)
        r["noisy"] = noisy(w, MAX_FORKS)
        if r["noisy"]:
            line += noise_note(w)
        log(line)
        measure_log.append(line)
        cost = args.warmup + args.duration + 3
        if not r["noisy"] or retry_slack[0] < cost:
            break
        retry_slack[0] -= cost
        time.sleep(1)   # let the neighbour's burst pass, then measure again
    return r


def measure_once(b, t, args, rnd):
    p = b.name
    if t in ("download", "upload"):
        n, w = bulk(b, args.conns, args.warmup, args.duration, t == "upload")
        gb = n / 1e9
        if not gb:
            die("%s: no bytes moved in the %s window" % (p, t))
        c0 = w.core_s.get(BAL_CPU, 0)
        r = dict(gbps=gb / w.wall, cpu_per_gb=w.cpu / gb, core0_per_gb=c0 / gb, util=w.cpu / w.wall)
        line = "  round %d  %-8s %-8s %6.2f GB/s  %6.3f CPU-s/GB  CPU0 %6.3f busy-s/GB  " \
               "balancer %3.0f%%  cpu0 %3.0f%% (others %3.0f%%)  cpu1 %3.0f%%" % (
                   rnd + 1, p, t, r["gbps"], r["cpu_per_gb"], r["core0_per_gb"], 100 * r["util"],
                   100 * w.core.get(0, 0), 100 * w.foreign, 100 * w.core.get(1, 0))
    elif t == "connect":
        reqs, secs, errs, w = connect_rate(b, args.wrk_conns, args.warmup, args.duration)
        c0 = w.core_s.get(BAL_CPU, 0)
        r = dict(cps=reqs / secs, per_cpu=reqs / w.cpu if w.cpu else None,
                 per_core0=reqs / c0 if c0 else None, errs=errs, util=w.cpu / w.wall)
        line = "  round %d  %-8s connect  %7.0f conn/s  %7.0f conn/CPU-s  %7.0f conn/CPU0-busy-s  " \
               "errors %d  balancer %3.0f%%  cpu0 %3.0f%% (others %3.0f%%)  cpu1 %3.0f%%" % (
                   rnd + 1, p, r["cps"], r["per_cpu"] or 0, r["per_core0"] or 0, errs, 100 * r["util"],
                   100 * w.core.get(0, 0), 100 * w.foreign, 100 * w.core.get(1, 0))
    else:
        die("unknown test %s" % t)
    return r, w, line


def table(rows, order):
    """rows: list of (label, {proxy: value}, decimals)."""
    cols = list(order)
    ratio_cols = [("sluice/" + p) for p in order if p != "sluice" and "sluice" in order]
    head = ["metric"] + cols + ratio_cols
    lines = []
    for label, vals, nd in rows:
        cells = [label] + [benchlib.fmt(vals.get(c), nd) for c in cols]
        if label.endswith("%") or label.startswith(("connect errors", "rounds still")):
            cells += ["-"] * len(ratio_cols)   # no ratio for these
            lines.append(cells)
            continue
        for rc in ratio_cols:
            other = rc.split("/")[1]
            a, b = vals.get("sluice"), vals.get(other)
            cells.append("%.2f" % (a / b) if a is not None and b else "-")
        lines.append(cells)
    return render_table(head, lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 3)),
                    help="measurement window per test, balancer and round, seconds (default 3)")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 4)),
                    help="rounds; the table shows the median (default 4)")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up before each window (default 0.5; wrk: 1)")
    ap.add_argument("--wait-quiet", type=float, default=20,
                    help="wait up to S seconds for an idle machine before starting (default 20)")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-measure a window disturbed by other processes up to N times (default 2)")
    ap.add_argument("--conns", type=int, default=4, help="parallel bulk connections (default 4)")
    ap.add_argument("--wrk-conns", type=int, default=64, help="wrk connections for the connect test")
    ap.add_argument("--origins", type=int, default=3)
    ap.add_argument("--only", default=",".join(PROXIES), help="subset, e.g. sluice,haproxy")
    ap.add_argument("--tests", default="download,upload,connect")
    ap.add_argument("--out", default=None, help="results file (default bench/results/l4-<date>.txt)")
    args = ap.parse_args()
    only = [p for p in PROXIES if p in args.only.split(",")]
    tests = args.tests.split(",")
    if os.cpu_count() < 2:
        die("needs 2 CPUs (balancer on CPU 0, client and origins on CPU 1)")
    benchlib.need_binaries([SLUICE, ORIGIN, WRK, CURL] + ([HAPROXY] if "haproxy" in only else []) +
                           ([NGINX] if "nginx" in only else []))
    per_test = args.warmup + args.duration + 1
    budget = args.rounds * len(only) * len(tests) * per_test + 20
    if budget > WATCHDOG_S:
        die("--duration too long: this run would take about %.0fs (limit %ds)" % (budget, WATCHDOG_S))

    retry_slack[0] = WATCHDOG_S - 30 - budget

    benchlib.install_signals(WATCHDOG_S)
    signal.alarm(WATCHDOG_S)
    signal.signal(signal.SIGINT, lambda *_: die("interrupted"))   # even if inherited as ignored

    os.sched_setaffinity(0, {CLIENT_CPU})   # this script is the bulk client
    # Wait (bounded) for other work on the machine to calm down.
    bg = benchlib.wait_idle(args.wait_quiet)
    signal.alarm(WATCHDOG_S)   # restarted: the quiet wait above has its own bound
    tmp = tempfile.mkdtemp(prefix="sluice-bench-l4-")
    benchlib.tmpdirs.append(tmp)
    try:
        # Origins: HTTP sluice-origin, one thread each, on the client's CPU.
        names, ports = benchlib.start_origins(args.origins, tmp, ["--mode", "http"])
        bals = {p: start_balancer(p, TPL, tmp, ports, PIPESIZE=PIPESIZE) for p in only}
        check_forwarding(bals, names)

        res = {p: {t: [] for t in tests} for p in only}
        for rnd in range(args.rounds):
            # Rotate who goes first each round so drift and warm caches do not
            # favour one balancer.
            order = only[rnd % len(only):] + only[:rnd % len(only)]
            for t in tests:
                for p in order:
                    res[p][t].append(measure(bals[p], t, args, rnd))
        # Balancers still alive and forwarding after the load?
        for b in bals.values():
            if b.proc.poll() is not None:
                die("%s died during the bench:\n%s" % (b.name, tail(b.proc.bench_out)))
        check_forwarding(bals, names)
    finally:
        stop_all()

    rows = []
    def col(t, k, agg=statistics.median):
        out = {}
        for p in only:
            rs = res[p].get(t, [])
            clean = [r for r in rs if not r["noisy"]]
            vals = [r[k] for r in (clean or rs) if r[k] is not None]
            if vals:
                out[p] = agg(vals)
        return out
    if "download" in tests:
        rows += [("download GB/s (higher better)", col("download", "gbps"), 2),
                 ("download balancer CPU-s/GB (lower better)", col("download", "cpu_per_gb"), 3),
                 ("download CPU 0 busy-s/GB, incl. softirq", col("download", "core0_per_gb"), 3),
                 ("download balancer CPU use %", {p: 100 * v for p, v in col("download", "util").items()}, 0)]
    if "upload" in tests:
        rows += [("upload GB/s (higher better)", col("upload", "gbps"), 2),
                 ("upload balancer CPU-s/GB (lower better)", col("upload", "cpu_per_gb"), 3),
                 ("upload CPU 0 busy-s/GB, incl. softirq", col("upload", "core0_per_gb"), 3),
                 ("upload balancer CPU use %", {p: 100 * v for p, v in col("upload", "util").items()}, 0)]
    if "connect" in tests:
        rows += [("new connections/s (higher better)", col("connect", "cps"), 0),
                 ("connections per balancer CPU-s (higher better)", col("connect", "per_cpu"), 0),
                 ("connections per CPU 0 busy-s, incl. softirq", col("connect", "per_core0"), 0),
                 ("connect balancer CPU use %", {p: 100 * v for p, v in col("connect", "util").items()}, 0),
                 ("connect errors (wrk socket errors + non-2xx)", col("connect", "errs", sum), 0)]
    disturbed = {p: sum(1 for t in tests for r in res[p][t] if r["noisy"]) for p in only}
    if any(disturbed.values()):
        rows.append(("rounds still disturbed after retries", disturbed, 0))

    now = datetime.datetime.now()
    notes = [
        "sluice L4 bench, %s" % now.strftime("%Y-%m-%d %H:%M:%S"),
        benchlib.host_note(),
        benchlib.versions_note(),
        "balancers pinned to CPU %d (one worker/thread each); client + %d sluice-origin on CPU %d; loopback"
        % (BAL_CPU, args.origins, CLIENT_CPU),
        "background load before the run: %s" % benchlib.fmt_load(bg),
        "haproxy: mode tcp, nbthread 1, option splice-request/splice-response, tune.pipesize %d" % PIPESIZE,
        "nginx: stream proxy_pass, worker_processes 1, default proxy_buffer_size (16k)",
        "sluice: mode tcp, workers 1, access log off (splice, 256 KiB pipes)",
        "each number: median of %d rounds (order rotated per round); per-round lines below the table"
        % args.rounds,
        "bulk: %d connections, %gs window after %gs warm-up; download client discards with"
        " recv(MSG_TRUNC) (no copy); upload client %s"
        % (args.conns, args.duration, args.warmup,
           "send()s 1 MiB from memory" if UPLOAD_SEND else "sendfile()s from tmpfs (no copy)"),
        "connect: wrk -t1 -c%d -H 'Connection: close', %gs window after a %gs wrk warm-up run"
        % (args.wrk_conns, max(1, round(args.duration)), max(1, round(args.warmup)) if args.warmup > 0 else 0),
        "balancer CPU = utime+stime from /proc/PID/stat (nginx: master+worker); GB = 1e9 bytes",
        "CPU 0 busy = all non-idle time of CPU 0 from /proc/stat (the balancer's own CPU-s plus the",
        "  softirq/ksoftirqd network work the kernel ran there; only the balancer is pinned there)",
    ]
    text = benchlib.report(notes, table(rows, only), sum(disturbed.values()), targets(res, only))
    text += "\nper round:\n" + "\n".join(measure_log) + "\n"
    benchlib.write_results(text, args.out, "l4", now)
    cleanup()
    signal.alarm(0)


def targets(res, only):
    if "sluice" not in only or "haproxy" not in only:
        return ""
    def med(rs):
        rs = [r for r in rs if not r["noisy"]] or rs
        return {k: statistics.median([r[k] for r in rs if r[k] is not None] or [0])
                for k in rs[0] if k != "noisy"}
    res = {p: {t: med(rs) for t, rs in res[p].items() if rs} for p in only}
    out = ["targets (vs haproxy):"]
    for t in ("download", "upload"):
        if t in res["sluice"] and t in res["haproxy"]:
            r = res["sluice"][t]["cpu_per_gb"] / res["haproxy"][t]["cpu_per_gb"]
            out.append("  %-8s CPU-s/GB sluice/haproxy = %.2f  (target <= 1.00, aim 0.80): %s" % (
                t, r, "met" if r <= 1.0 else "MISSED"))
    if "connect" in res["sluice"] and "connect" in res["haproxy"]:
        a, b = res["sluice"]["connect"]["per_cpu"], res["haproxy"]["connect"]["per_cpu"]
        if a and b:
            out.append("  conn per CPU-s sluice/haproxy = %.2f  (target >= 1.00): %s" % (
                a / b, "met" if a / b >= 1.0 else "MISSED"))
    return "\n".join(out)


if __name__ == "__main__":
    benchlib.run_main(main)
