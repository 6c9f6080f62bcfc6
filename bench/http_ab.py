#!/usr/bin/python3
"""Interleaved A/B of HTTP/1.1 proxies at equal load: builds or settings of
sluice against each other, or against NGINX, HAProxy or a blind relay.

Each variant runs in front of the same three origins, pinned to CPU 0 in a
CPU cgroup capped at --cap of a CPU (benchlib.CpuQuota), so that all run
saturated; wrk (-t1 -c50, keep-alive or --close) and the origins run on
CPU 1, as in bench/http.py. Rounds alternate the order of the variants, and
the report gives each variant's median CPU per request and, against the
first variant, the median of the per-round ratios: on this noisy 2-CPU host
two builds must be compared within one run, round by round.

Variants (NAME=KIND[:ARG][:ENV=VALUE,...]):
  base=sluice                  ./sluice (or $SLUICE_BIN)
  pgo=sluice:build/pgo/sluice  another sluice binary
  thp=sluice::GLIBC_TUNABLES=glibc.malloc.hugetlb=1
                               the same binary with its environment changed
  nginx=nginx, haproxy=haproxy the Debian packages, bench/http/ configs
  oldnginx=nginx:DIR           NGINX with DIR/nginx.conf.in as its config
  relay=relay:epoll            bench/micro/relay_io.c (epoll, uring, upoll,
                               uring-ssend, upoll-qsend): the no-HTTP floor

--syscalls also counts each variant's system calls per request in every
window (perf tracepoints; skipped when perf cannot count).

Usage: bench/http_ab.py [--rounds N] [--duration S] [--close] [--cap F]
                        [--syscalls] [--profile DIR] VARIANT VARIANT...
Results: printed, and written to bench/results/http-ab-<date>.txt.
"""
import argparse
import datetime
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import BAL_CPU, CC, CLIENT_CPU, ROOT, die, log  # noqa: E402

TPL = os.path.join(ROOT, "bench", "http")
PERF = "/usr/bin/perf"
SYSCALLS = ("epoll_wait", "recvfrom", "sendto", "sendmsg", "writev", "read", "write",
            "accept4", "close", "connect", "epoll_ctl", "io_uring_enter")
WATCHDOG_S = 1800


def parse_variant(text):
    """NAME=KIND[:ARG][:ENV=V,...] -> (name, kind, arg, env)."""
    if "=" not in text:
        die("variant %r: expected NAME=KIND[:ARG][:ENV=VALUE,...]" % text)
    name, spec = text.split("=", 1)
    parts = spec.split(":", 2)
    kind, arg = parts[0], parts[1] if len(parts) > 1 else ""
    env = dict(kv.split("=", 1) for kv in parts[2].split(",") if "=" in kv) if len(parts) > 2 else {}
    if kind not in ("sluice", "nginx", "haproxy", "relay"):
        die("variant %r: KIND is sluice, nginx, haproxy or relay" % text)
    return name, kind, arg, env


def start_variant(name, kind, arg, env, tmp, ports):
    old = dict(os.environ)
    os.environ.update(env)          # inherited by the process started now
    try:
        if kind == "relay":
            exe = os.path.join(tmp, "relay_io")
            if not os.path.exists(exe):
                r = subprocess.run([CC, "-O2", "-std=gnu11", "bench/micro/relay_io.c", "-o", exe, "-luring"],
                                   cwd=ROOT, capture_output=True, timeout=120)
                if r.returncode:
                    die("building the relay failed:\n%s" % r.stderr.decode(errors="replace"))
            port = benchlib.free_port()
            p = benchlib.start(name, [exe, arg or "epoll", str(port), ",".join(map(str, ports))], BAL_CPU, tmp)
            benchlib.wait_port(port, p)
            return benchlib.Balancer(name, port, p)
        if kind == "sluice" and arg:
            benchlib.SLUICE = os.path.abspath(arg)
        tpl = os.path.abspath(arg) if kind != "sluice" and arg else TPL
        b = benchlib.start_balancer(kind, tpl, os.path.join(tmp, name), ports, label=name)
        benchlib.SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "sluice"))
        return b
    finally:
        os.environ.clear()
        os.environ.update(old)


def perf_start(b):
    events = ["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + s for s in SYSCALLS]
    p = subprocess.Popen(["taskset", "-c", str(CLIENT_CPU), PERF, "stat", "-x,", "-e", ",".join(events),
                          "-p", ",".join(map(str, b.pids))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    return p


def profile_start(b, path):
    """perf record of the balancer's own CPU (call graphs) for one window."""
    p = subprocess.Popen(["taskset", "-c", str(CLIENT_CPU), PERF, "record", "-q", "-e", "cpu-clock", "-g",
                          "-o", path, "-p", ",".join(map(str, b.pids))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return p


def profile_stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def perf_stop(p, reqs):
    """'syscalls 4.55 (epoll_wait 0.54 recvfrom 2.00 ...)' per request."""
    p.send_signal(signal.SIGINT)
    try:
        err = p.communicate(timeout=10)[1].decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        err = p.communicate()[1].decode(errors="replace")
    counts = {}
    for ln in err.splitlines():
        f = ln.split(",")
        if len(f) > 3 and f[0].strip().isdigit():
            counts[f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "ALL")] = int(f[0])
    if not reqs or "ALL" not in counts:
        return "syscalls: perf counted nothing"
    per = sorted(((k, v / reqs) for k, v in counts.items() if k != "ALL" and v / reqs >= 0.01),
                 key=lambda kv: -kv[1])
    return "syscalls %.2f (%s)" % (counts["ALL"] / reqs, " ".join("%s %.2f" % kv for kv in per))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--cap", type=float, default=0.5)
    ap.add_argument("--close", action="store_true", help="wrk with Connection: close")
    ap.add_argument("--syscalls", action="store_true")
    ap.add_argument("--profile", metavar="DIR",
                    help="also perf record each window to DIR/NAME-rROUND.data (costs the balancer a little)")
    ap.add_argument("--out")
    args = ap.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    if len({v[0] for v in variants}) != len(variants):
        die("variant names must differ")
    benchlib.setup("http_ab bench")
    benchlib.install_signals(WATCHDOG_S)
    signal.alarm(WATCHDOG_S)
    if args.profile:
        if not os.access(PERF, os.X_OK):
            die("--profile needs perf")
        os.makedirs(args.profile, exist_ok=True)
    if args.syscalls and not os.access(PERF, os.X_OK):
        log("perf not found: no system call counts")
        args.syscalls = False
    now = datetime.datetime.now()
    tmp = tempfile.mkdtemp(prefix="sluice-http-ab-")
    _, ports = benchlib.start_origins(3, tmp, extra=["--threads", "1"])
    bals, quotas = {}, []
    for name, kind, arg, env in variants:
        b = bals[name] = start_variant(name, kind, arg, env, tmp, ports)
        q = benchlib.CpuQuota(name, b.pids)
        q.set(args.cap)
        quotas.append(q)
    headers = ["Connection: close"] if args.close else []
    lines, cost = [], {n: [] for n in bals}
    try:
        for r in range(args.rounds):
            order = list(bals) if r % 2 == 0 else list(reversed(list(bals)))
            for n in order:
                b = bals[n]
                url = "http://127.0.0.1:%d/" % b.port
                benchlib.wrk_window(url, 1, headers)           # warm-up, not counted
                perf = perf_start(b) if args.syscalls else None
                prof = profile_start(b, os.path.join(args.profile, "%s-r%d.data" % (n, r + 1))) \
                    if args.profile else None
                m = benchlib.measured_wrk(b, url, args.duration, headers, warmup=0)
                sc = perf_stop(perf, m["reqs"]) if perf else ""
                if prof:
                    profile_stop(prof)
                cost[n].append(m["cpu_us"])
                line = "  [round %d] %-10s %6.1f us CPU/req  %7.0f req/s  errors %d%s  %s" % (
                    r + 1, n, m["cpu_us"], m["rps"], m["errors"] + m["refused"],
                    "  (disturbed)" if m["noisy"] else "", sc)
                print(line, flush=True)
                lines.append(line)
    finally:
        benchlib.stop_all()
        for q in quotas:
            q.remove()
    base = variants[0][0]
    summary = ["%-10s median %6.1f us CPU/req  (%s)" % (n, statistics.median(v), " ".join("%.1f" % x for x in v))
               for n, v in cost.items()]
    for n in list(bals)[1:]:
        ratios = [a / b for a, b in zip(cost[n], cost[base])]
        summary.append("%s / %s CPU per request: median of rounds %.3f  (%s)" % (
            n, base, statistics.median(ratios), " ".join("%.2f" % x for x in ratios)))
    text = "\n".join([
        "sluice HTTP/1.1 A/B, %s" % now.strftime("%Y-%m-%d %H:%M:%S"), benchlib.host_note(),
        "variants: %s" % " ".join(args.variants),
        "each capped at %.2f CPU on CPU %d; wrk -t1 -c50 -d%ds%s and 3 origins on CPU %d; %d rounds, order "
        "alternating" % (args.cap, BAL_CPU, args.duration, " (Connection: close)" if args.close else "",
                         CLIENT_CPU, args.rounds), ""] + lines + [""] + summary) + "\n"
    print("\n".join(summary))
    benchlib.write_results(text, args.out, "http-ab", now)


if __name__ == "__main__":
    benchlib.run_main(main)
