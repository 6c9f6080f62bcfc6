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
"""
import argparse
import datetime
import os
import platform
import re
import selectors
import shutil
import signal
import statistics
import socket
import string
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPL = os.path.join(ROOT, "bench", "l4")
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "sluice"))
ORIGIN = os.environ.get("ORIGIN_BIN", os.path.join(ROOT, "sluice-origin"))
HAPROXY = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
WRK = os.environ.get("WRK_BIN", "/usr/bin/wrk")
CURL = "/usr/bin/curl"
PIPESIZE = 262144            # haproxy tune.pipesize; sluice asks for 256 KiB pipes
BAL_CPU, CLIENT_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
HUGE = 1 << 50               # "endless" body: the window ends the transfer
WATCHDOG_S = 250             # with the quiet wait, the bench stays under 5 minutes
PROXIES = ("sluice", "haproxy", "nginx")

started = []                 # Popen objects we started, in order
extra_pids = []              # nginx worker pids (not our children, but ours)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log("l4 bench: " + msg)
    cleanup()
    sys.exit(1)


# ---- processes -------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(name, argv, cpu, tmp):
    """Start argv pinned to `cpu`, output to TMP/NAME.out."""
    with open(os.path.join(tmp, name + ".out"), "wb") as out:
        p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=out, stderr=out,
                             stdin=subprocess.DEVNULL, cwd=tmp)
    p.bench_name = name
    p.bench_out = out.name
    started.append(p)
    return p


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode(errors="replace")
    except OSError:
        return ""


def wait_port(port, p, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            die("%s exited (%s) at startup:\n%s" % (p.bench_name, p.returncode, tail(p.bench_out)))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    die("%s did not listen on %d within %.0fs:\n%s" % (p.bench_name, port, timeout, tail(p.bench_out)))


def stop_all():
    for p in reversed(started):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    end = time.monotonic() + 5
    for p in reversed(started):
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    for pid in extra_pids:          # an nginx worker outliving its master
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    started.clear()
    extra_pids.clear()


_tmpdirs = []


def cleanup():
    stop_all()
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    _tmpdirs.clear()


# ---- /proc -----------------------------------------------------------------

def proc_cpu_s(pid):
    """utime+stime of a whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def core_times():
    """Per CPU from /proc/stat, in seconds: (busy, of which task time).
    busy = user+nice+system+irq+softirq (not idle, iowait, steal);
    task time = user+nice+system (what processes, ksoftirqd included, were charged)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                out[int(m.group(1))] = ((v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK,
                                        (v[0] + v[1] + v[2]) / CLK_TCK)
    return out


def background_load(secs=1.0):
    """Busy fraction of each CPU while nothing of ours runs load."""
    a = core_times()
    time.sleep(secs)
    b = core_times()
    return {c: (b[c][0] - a[c][0]) / secs for c in b if c in a}


class Balancer:
    def __init__(self, name, port, proc):
        self.name, self.port, self.proc = name, port, proc
        self.pids = [proc.pid]

    def cpu(self):
        return sum(proc_cpu_s(p) for p in self.pids)


ours = set()     # pids of the bench's own load processes (wrk) while they run


def foreign_cpu():
    """CPU seconds so far (utime+stime) of each process that is not part of the
    bench; kernel threads left out. A process that starts and ends inside a
    window is missed: this is an indicator of a noisy neighbour, not an audit."""
    mine = {os.getpid()} | {p.pid for p in started} | set(extra_pids) | ours
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in mine:
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if d == "2" or fields[1] == "2":
            continue
        out[int(d)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def forks():
    """Processes created since boot (/proc/stat "processes")."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("processes "):
                return int(line.split()[1])
    return 0


class Window:
    """CPU of the balancer and of both cores over one measurement window, and
    how much CPU other processes on the machine took meanwhile."""
    def __init__(self, bal):
        self.bal = bal

    def __enter__(self):
        self.f0 = foreign_cpu()
        self.n0 = forks()
        self.t0 = time.monotonic()
        self.c0 = self.bal.cpu()
        self.k0 = core_times()
        return self

    def __exit__(self, *exc):
        self.t1 = time.monotonic()
        self.cpu = self.bal.cpu() - self.c0
        k1 = core_times()
        self.wall = self.t1 - self.t0
        self.core_s = {c: k1[c][0] - self.k0[c][0] for c in k1 if c in self.k0}
        self.core = {c: v / self.wall for c, v in self.core_s.items()}
        f1 = foreign_cpu()
        self.foreign = sum(max(0.0, v - self.f0.get(pid, 0.0)) for pid, v in f1.items()) / self.wall
        # The bench forks nothing inside a window: new processes are someone
        # else's, and short-lived ones escape the scan above.
        self.forks = forks() - self.n0
        return False


# ---- configs and starting the balancers -------------------------------------

def render(name, tmp, **kw):
    with open(os.path.join(TPL, name + ".in")) as f:
        text = string.Template(f.read()).substitute(TMPDIR=tmp, PIPESIZE=PIPESIZE, **kw)
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start_balancers(tmp, origins, only):
    bals = {}
    be = [("b%d" % (i + 1), "127.0.0.1:%d" % port) for i, port in enumerate(origins)]
    if "sluice" in only:
        port = free_port()
        cfg = render("sluice.yaml", tmp, LISTEN="127.0.0.1:%d" % port, SLUICE_BACKENDS="\n".join(
            "      - {name: %s, address: %s}" % b for b in be))
        p = start("sluice", [SLUICE, "-c", cfg], BAL_CPU, tmp)
        wait_port(port, p)
        bals["sluice"] = Balancer("sluice", port, p)
    if "haproxy" in only:
        port = free_port()
        cfg = render("haproxy.cfg", tmp, LISTEN="127.0.0.1:%d" % port, HAPROXY_BACKENDS="\n".join(
            "    server %s %s" % b for b in be))
        p = start("haproxy", [HAPROXY, "-f", cfg, "-db"], BAL_CPU, tmp)
        wait_port(port, p)
        bals["haproxy"] = Balancer("haproxy", port, p)
    if "nginx" in only:
        port = free_port()
        ntmp = os.path.join(tmp, "nginx")
        os.mkdir(ntmp)
        cfg = render("nginx.conf", ntmp, LISTEN="127.0.0.1:%d" % port, NGINX_BACKENDS="\n".join(
            "        server %s;" % b[1] for b in be))
        p = start("nginx", [NGINX, "-p", ntmp + "/", "-e", os.path.join(ntmp, "nginx-error.log"),
                            "-c", cfg, "-g", "daemon off;"], BAL_CPU, tmp)
        wait_port(port, p)
        b = Balancer("nginx", port, p)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            kids = children_of(p.pid)
            if kids:
                break
            time.sleep(0.05)
        else:
            die("nginx started no worker process")
        extra_pids.extend(kids)
        b.pids += kids
        bals["nginx"] = b
    return bals


# ---- checks ----------------------------------------------------------------

def check_forwarding(bals, names):
    """A few plain requests through each balancer: the answer must be an
    origin's name, every origin must be reached, and a 1 MB body must arrive
    whole."""
    for b in bals.values():
        seen = set()
        for _ in range(2 * len(names)):
            r = subprocess.run([CURL, "-sS", "--max-time", "5", "http://127.0.0.1:%d/" % b.port],
                               capture_output=True, timeout=10)
            body = r.stdout.decode(errors="replace").strip()
            if r.returncode != 0 or body not in names:
                die("%s does not forward: curl rc=%d body=%r err=%r" % (
                    b.name, r.returncode, body[:80], r.stderr.decode(errors="replace")[:200]))
            seen.add(body)
        if seen != set(names):
            die("%s reached only %s of %s" % (b.name, sorted(seen), names))
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
    ours.add(p.pid)
    try:
        with Window(bal) as win:
            so, se = p.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        die("%s: wrk ran past its duration" % bal.name)
    finally:
        ours.discard(p.pid)
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
NOISE = 0.05            # other processes above 5% of a CPU: the window is disturbed
MAX_FORKS = 10          # ... or more than this many processes started during it
retry_slack = [0.0]     # seconds of the watchdog's budget left over for re-measuring


def measure(b, t, args, rnd):
    """One measurement of test t through balancer b."""
    p = b.name
    for attempt in range(1 + args.retries):
        r, w, line = measure_once(b, t, args, rnd)
        r["noisy"] = w.foreign > NOISE or w.forks > MAX_FORKS
        if r["noisy"]:
            line += "  DISTURBED: other processes took %.0f%% of a CPU, %d started" % (
                100 * w.foreign, w.forks)
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


def fmt(v, nd):
    if v is None:
        return "-"
    return "%.*f" % (nd, v)


def table(rows, order):
    """rows: list of (label, {proxy: value}, decimals)."""
    cols = list(order)
    ratio_cols = [("sluice/" + p) for p in order if p != "sluice" and "sluice" in order]
    head = ["metric"] + cols + ratio_cols
    lines = []
    for label, vals, nd in rows:
        cells = [label] + [fmt(vals.get(c), nd) for c in cols]
        if label.endswith("%") or label.startswith(("connect errors", "rounds still")):
            cells += ["-"] * len(ratio_cols)   # no ratio for these
            lines.append(cells)
            continue
        for rc in ratio_cols:
            other = rc.split("/")[1]
            a, b = vals.get("sluice"), vals.get(other)
            cells.append("%.2f" % (a / b) if a is not None and b else "-")
        lines.append(cells)
    w = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(head)) + " |",
           "|" + "|".join("-" * (x + 2) if i == 0 else "-" * (x + 1) + ":" for i, x in enumerate(w)) + "|"]
    for r in lines:
        out.append("| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])
                                      for i, c in enumerate(r)) + " |")
    return "\n".join(out)


def version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=5)
        return (r.stdout + r.stderr).decode(errors="replace").splitlines()[0].strip()
    except Exception:
        return "?"


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
    for path in [SLUICE, ORIGIN, WRK, CURL] + ([HAPROXY] if "haproxy" in only else []) + \
            ([NGINX] if "nginx" in only else []):
        if not os.access(path, os.X_OK):
            die("missing %s (run `make all` / `make deps`)" % path)
    per_test = args.warmup + args.duration + 1
    budget = args.rounds * len(only) * len(tests) * per_test + 20
    if budget > WATCHDOG_S:
        die("--duration too long: this run would take about %.0fs (limit %ds)" % (budget, WATCHDOG_S))

    retry_slack[0] = WATCHDOG_S - 30 - budget

    def on_alarm(*_):
        die("watchdog: the bench ran over %ds" % WATCHDOG_S)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WATCHDOG_S)
    signal.signal(signal.SIGTERM, lambda *_: die("terminated"))
    signal.signal(signal.SIGINT, lambda *_: die("interrupted"))   # even if inherited as ignored

    os.sched_setaffinity(0, {CLIENT_CPU})   # this script is the bulk client
    # Wait (bounded) for other work on the machine to calm down.
    end = time.monotonic() + args.wait_quiet
    bg = background_load()
    while max(bg.values()) > 0.10 and time.monotonic() < end:
        log("l4 bench: machine busy (%s), waiting up to %.0fs more for quiet" % (
            ", ".join("cpu%d %.0f%%" % (c, 100 * v) for c, v in sorted(bg.items())),
            end - time.monotonic()))
        bg = background_load(2.0)
    if max(bg.values()) > 0.10:
        log("l4 bench: WARNING: the machine is not idle (CPU busy %s); numbers will be noisy" %
            ", ".join("cpu%d %.0f%%" % (c, 100 * v) for c, v in sorted(bg.items())))
    signal.alarm(WATCHDOG_S)   # restarted: the quiet wait above has its own bound
    tmp = tempfile.mkdtemp(prefix="sluice-bench-l4-")
    _tmpdirs.append(tmp)
    try:
        # Origins: HTTP sluice-origin, one thread each, on the client's CPU.
        names, ports = [], []
        for i in range(args.origins):
            name = "b%d" % (i + 1)
            port = free_port()
            p = start("origin-" + name, [ORIGIN, "--listen", "127.0.0.1:%d" % port, "--name", name,
                                         "--mode", "http"], CLIENT_CPU, tmp)
            wait_port(port, p)
            names.append(name)
            ports.append(port)
        log("l4 bench: origins %s on CPU %d; balancers on CPU %d" % (
            ", ".join("%s=%d" % x for x in zip(names, ports)), CLIENT_CPU, BAL_CPU))
        bals = start_balancers(tmp, ports, only)
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
        "host: %s, %d CPUs (%s), kernel %s" % (platform.node(), os.cpu_count(), cpu_model(),
                                               platform.release()),
        "sluice: %s | haproxy: %s | nginx: %s" % (version([SLUICE, "--version"]),
                                                   version([HAPROXY, "-v"]), version([NGINX, "-v"])),
        "balancers pinned to CPU %d (one worker/thread each); client + %d sluice-origin on CPU %d; loopback"
        % (BAL_CPU, args.origins, CLIENT_CPU),
        "background load before the run: %s" % ", ".join(
            "cpu%d %.0f%%" % (c, 100 * v) for c, v in sorted(bg.items())),
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
    text = "\n".join(notes) + "\n\n" + table(rows, only) + "\n"
    if any(disturbed.values()):
        text += ("\nWARNING: other processes on this machine took more than %.0f%% of a CPU during %d"
                 " measurement window(s), even after retries; those numbers are not trustworthy."
                 " Run again on an idle machine.\n" % (100 * NOISE, sum(disturbed.values())))
    verdict = targets(res, only)
    if verdict:
        text += "\n" + verdict + "\n"
    print(text, flush=True)
    text += "\nper round:\n" + "\n".join(measure_log) + "\n"
    outp = args.out or os.path.join(ROOT, "bench", "results", "l4-%s.txt" % now.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(outp), exist_ok=True)
    with open(outp, "w") as f:
        f.write(text)
    log("written to %s" % os.path.relpath(outp, ROOT))
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


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        die("interrupted")
    finally:
        cleanup()
