#!/usr/bin/python3
"""HTTP/1.1 benchmark: sluice vs HAProxy (mode http) vs NGINX (proxy_pass).

One run, same origins, same client (wrk), one worker each, upstream keep-alive
in all three, access logs off in all three. The balancers are pinned to CPU 0;
the client (this script, wrk) and the origins to CPU 1. A balancer's CPU is
utime+stime from /proc/PID/stat (all its threads; for nginx master + worker),
sampled just before and just after each measurement window.

Tests (--tests, in this order)
  idle       open N idle keep-alive client connections (each sends one request
             and reads the response, then stays open) to a freshly started
             balancer: growth of VmRSS / N = memory per idle client connection.
  keepalive  wrk -t1 -c50 (keep-alive): req/s and requests per balancer CPU-s.
  close      the same with -H 'Connection: close' (a new client connection per
             request; the upstream side stays keep-alive).
  floor      in each round, after the keep-alive windows: the same keep-alive
             load through a blind TCP relay that does no HTTP work at all
             (bench/micro/relay_io.c: one upstream connection per client,
             bytes copied both ways, epoll + recv/send like the balancers).
             Its requests per CPU-s are about the most a proxy making these
             socket calls can reach here. --relays adds io_uring variants.
  capped     the keep-alive and close windows again with every balancer
             capped at the same share of a CPU (--cap, default 0.5; a CPU
             cgroup per balancer, benchlib.CpuQuota), so that all three run
             saturated. Uncapped, a balancer that keeps up with the client
             idles part of the time and sleeps and wakes more per request
             than one that is always busy, which the requests per CPU-s of
             the first windows then count against it.
  latency    wrk -t1 -c4 --latency, direct to origin b1 and through a second
             instance of each balancer that has b1 as its only backend (so CPU 1
             runs the same processes in both cases): p50/p90/p99 and the added
             latency (balancer - direct). Flat out by default; --lat-pace-ms N
             makes each connection pause N ms after a response (wrk delay()).
  syscalls   a short keep-alive and close run under `perf stat` counting the
             balancer's system calls (tracepoints): syscalls per request, by
             call. Diagnostic, not a target; skipped when perf cannot count.
  parser     builds bench/micro/http1_parse.c and runs it on CPU 0: ns per
             parse of a typical browser request head.

Every load loop is bounded in time; the whole run also has a watchdog.
With --rounds N, keepalive, close and latency are measured N times (order
rotated per round) and the table shows the median.
Stdlib only. Usage: bench/http.py [--duration S] [--only a,b] [--tests a,b]
Results: printed, and written to bench/results/http-<date>.txt.

The process, /proc, noise and report helpers are in bench/benchlib.py, shared
with bench/l4.py (the L4 benchmark), so that the two drivers measure the same
way.
"""
import argparse
import datetime
import errno
import os
import re
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# The helpers shared with the other drivers are in bench/benchlib.py. This
# directory goes to the END of the import path, so that this file never
# shadows the standard library's http package.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
import benchlib  # noqa: E402
from benchlib import (BAL_CPU, CC, CLIENT_CPU, CURL, HAPROXY, NGINX, ORIGIN, ROOT, SLUICE,  # noqa: E402
                      WRK, Window, cleanup, die, log, noise_note, noisy, render_table,
                      start_balancer, stop_all, tail)

TPL = os.path.join(ROOT, "bench", "http")
PERF = "/usr/bin/perf"
WRK_LUA = os.path.join(TPL, "latency.lua")
WATCHDOG_S = 340             # with the quiet wait, the bench stays under 6 minutes
PROXIES = ("sluice", "haproxy", "nginx")
TESTS = ("idle", "keepalive", "floor", "close", "capped", "latency", "syscalls", "parser")
RELAYS = ["relay-epoll"]   # --relays changes it
LOADS = ("keepalive", "close", "capped_keepalive", "capped_close")   # results measured by load()


def relay_model(name):
    """relay_io's I/O model of a relay's name: "relay-upoll" -> "upoll"."""
    return name[len("relay-"):]
MAX_FORKS = 10               # a window is disturbed when more processes than this started during it

sluice_built = "?"           # mtime of the sluice binary when the run started
_running = []                # wrk/perf Popen objects in flight


def _stop_own():
    """cleanup()'s first step: wrk/perf still running, idle connections."""
    for p in _running:
        if p.poll() is None:
            p.kill()
            p.wait()
    _running.clear()
    close_idle()


benchlib.setup("http bench", on_cleanup=_stop_own)


# ---- checks ----------------------------------------------------------------

def http_get(port, path="/", n=1, extra=b"", timeout=5.0):
    """n GET requests on one keep-alive connection; returns [(status, headers, body)]."""
    out = []
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        for _ in range(n):
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n" + extra + b"\r\n")
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise OSError("connection closed before a response head")
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            hdrs = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            clen = int(hdrs.get("content-length", "-1"))
            if clen < 0:
                raise OSError("response without Content-Length: %r" % head[:200])
            while len(buf) < clen:
                d = s.recv(65536)
                if not d:
                    raise OSError("connection closed inside a response body")
                buf += d
            out.append((status, hdrs, buf[:clen]))
            buf = buf[clen:]
    finally:
        s.close()
    return out


def check_forwarding(bals, names, origin_ports):
    """curl through each balancer: the answer must be an origin's name and
    every origin must be reached; then one keep-alive connection must be
    balanced per request (HTTP, not TCP, proxying) and stay open."""
    for nm, port in zip(names, origin_ports):
        r = subprocess.run([CURL, "-sS", "--max-time", "5", "http://127.0.0.1:%d/" % port],
                           capture_output=True, timeout=10)
        if r.stdout.decode(errors="replace").strip() != nm:
            die("origin %s on %d answers %r" % (nm, port, r.stdout[:80]))
    for b in bals.values():
        seen = benchlib.curl_reaches(b, names, "proxy")
        try:
            rs = http_get(b.port, n=2 * len(names))
        except OSError as e:
            die("%s: keep-alive check failed: %s" % (b.name, e))
        ka = {body.decode(errors="replace").strip() for st, h, body in rs if st == 200}
        if ka != set(names):
            die("%s: %d requests on one keep-alive connection reached %s, not every origin" % (
                b.name, len(rs), sorted(ka)))
        log("  %-8s proxies to %s (curl), per request on one keep-alive connection" % (
            b.name, ", ".join(sorted(seen))))


# ---- idle keep-alive connections --------------------------------------------

_idle = []


def close_idle():
    for s in _idle:
        try:
            s.close()
        except OSError:
            pass
    _idle.clear()


def open_idle(port, n, deadline, batch):
    """Open n connections, each sends one GET and reads the whole response;
    they stay open in _idle. Non-blocking, batch connections at a time."""
    req = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: sluice-bench-idle\r\nAccept: */*\r\n\r\n"
    sel = selectors.DefaultSelector()
    done = 0
    try:
        while done < n:
            st = {}
            for _ in range(min(batch, n - done)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                _idle.append(s)
                rc = s.connect_ex(("127.0.0.1", port))
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, "connect: " + os.strerror(rc))
                st[s] = [0, b""]
                sel.register(s, selectors.EVENT_WRITE)
            while st:
                if time.monotonic() > deadline:
                    raise OSError("opening idle connections ran past its time bound "
                                  "(%d of %d open)" % (done, n))
                for key, _ in sel.select(timeout=0.2):
                    s = key.fileobj
                    phase, buf = st[s]
                    if phase == 0:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, "connect: " + os.strerror(err))
                        s.send(req)        # ~80 bytes into an empty socket buffer
                        st[s][0] = 1
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:
                        d = s.recv(65536)
                    except BlockingIOError:
                        continue
                    if not d:
                        raise OSError("the balancer closed a connection before its response ended")
                    buf += d
                    st[s][1] = buf
                    if b"\r\n\r\n" in buf:
                        head, body = buf.split(b"\r\n\r\n", 1)
                        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                        if not head.startswith(b"HTTP/1.1 200") or not m:
                            raise OSError("unexpected response %r" % head[:120])
                        if re.search(rb"(?i)\r\nconnection:\s*close", head):
                            raise OSError("the balancer answered Connection: close")
                        if len(body) >= int(m.group(1)):
                            sel.unregister(s)
                            del st[s]
                            done += 1
    finally:
        sel.close()


def idle_still_open():
    """How many of the idle connections the balancer has not closed."""
    alive = 0
    for s in _idle:
        try:
            d = s.recv(1, socket.MSG_PEEK)
            if d:
                alive += 1      # unexpected bytes, but open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def measure_idle(b, n, batch, settle=1.0):
    """RSS growth of the balancer per idle keep-alive client connection.
    Connections are opened `batch` at a time, and the warm-up is two batches
    (then closed), so that buffers and upstream connections the balancer keeps
    for `batch` requests in flight exist before the first RSS reading."""
    deadline = time.monotonic() + 20
    try:
        open_idle(b.port, 2 * batch, deadline, batch)     # warm-up, then closed
        close_idle()
        time.sleep(0.5)
        before = b.rss_kb()
        t0 = time.monotonic()
        open_idle(b.port, n, deadline, batch)
        t_open = time.monotonic() - t0
        time.sleep(settle)
        after = b.rss_kb()
        alive = idle_still_open()
    except OSError as e:
        close_idle()
        die("%s: idle connections: %s" % (b.name, e))
    close_idle()
    per = (after - before) / n
    line = "  idle     %-8s %d connections opened in %.1fs: VmRSS %d -> %d kB  = %.2f KB per" \
           " connection  (%d still open after %.0fs)" % (b.name, n, t_open, before, after, per,
                                                         alive, settle)
    return dict(rss_per_conn=per, rss_before=before, rss_after=after, alive=alive), line


# ---- wrk ---------------------------------------------------------------------

def parse_wrk(out, name):
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if not m:
        die("%s: wrk printed no summary:\n%s" % (name, out))
    v = {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
    v["secs"] = v["duration_us"] / 1e6
    v["socket_errs"] = v["connect"] + v["read"] + v["write"] + v["timeout"]
    v["non2xx"] = v["status"]
    return v


def wrk_args(port, conns, secs, close, latency=False, path="/"):
    a = ["taskset", "-c", str(CLIENT_CPU), WRK, "-t1", "-c%d" % conns, "-d%ds" % secs,
         "--timeout", "2s", "-s", WRK_LUA]
    if close:
        a += ["-H", "Connection: close"]
    if latency:
        a.append("--latency")
    return a + ["http://127.0.0.1:%d%s" % (port, path)]


def run_wrk(argv, name, bal, secs, pace_ms=0):
    """Run wrk for secs inside a Window on bal (None: no balancer CPU)."""
    env = dict(os.environ, BENCH_PACE_MS=str(pace_ms))
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _running.append(p)
    win = Window(bal)
    try:
        so, se = benchlib.run_client(p, secs + 30, "%s: wrk" % name, win)
    finally:
        if p in _running:       # not when die() (cleanup) emptied the list
            _running.remove(p)
    out = so.decode(errors="replace")
    if p.returncode != 0:
        die("%s: wrk failed (rc=%d):\n%s%s" % (name, p.returncode, out, se.decode(errors="replace")))
    return parse_wrk(out, name), win, out


def load(b, close, args, tag=""):
    """keepalive / close test: wrk -c50 for args.duration after a warm-up."""
    if args.warmup > 0:
        subprocess.run(wrk_args(b.port, args.conns, args.warmup, close), capture_output=True,
                       timeout=args.warmup + 30)
    v, w, _ = run_wrk(wrk_args(b.port, args.conns, args.duration, close), b.name, b, args.duration)
    reqs = v["requests"]
    c0 = w.core_s.get(BAL_CPU, 0)
    r = dict(rps=reqs / v["secs"], per_cpu=reqs / w.cpu if w.cpu else None,
             per_core0=reqs / c0 if c0 else None,
             errs=v["socket_errs"], non2xx=v["non2xx"], util=w.cpu / w.wall,
             cpu_us=1e6 * w.cpu / reqs if reqs else None,
             user_us=1e6 * w.user / reqs if reqs else None)
    t = ("close" if close else "keepalive") + (" " + tag if tag else "")
    line = "  %-9s %-8s %7.0f req/s  %7.0f req/CPU-s  %5.1f us CPU/req (user %4.1f)  %7.0f req/CPU0-busy-s  " \
           "balancer %3.0f%%  errors: socket %d, non-2xx %d  cpu0 %3.0f%% cpu1 %3.0f%% (others %3.0f%%)" % (
               t, b.name, r["rps"], r["per_cpu"] or 0, r["cpu_us"] or 0, r["user_us"] or 0,
               r["per_core0"] or 0,
               100 * r["util"],
               r["errs"], r["non2xx"], 100 * w.core.get(0, 0), 100 * w.core.get(1, 0),
               100 * w.foreign)
    return r, w, line


def latency(port, name, bal, args):
    if args.warmup > 0:
        subprocess.run(wrk_args(port, args.lat_conns, args.warmup, False), capture_output=True,
                       timeout=args.warmup + 30)
    v, w, _ = run_wrk(wrk_args(port, args.lat_conns, args.lat_duration, False, latency=True),
                      name, bal, args.lat_duration, args.lat_pace_ms)
    r = dict(p50=v["p50_us"], p90=v["p90_us"], p99=v["p99_us"], p999=v["p999_us"],
             rps=v["requests"] / v["secs"], errs=v["socket_errs"], non2xx=v["non2xx"])
    line = "  latency  %-8s -c%d pace %dms: p50 %5d us  p90 %5d us  p99 %5d us  p99.9 %5d us  %7.0f req/s  " \
           "errors %d  (others %3.0f%%)" % (name, args.lat_conns, args.lat_pace_ms, r["p50"], r["p90"], r["p99"],
                                           r["p999"], r["rps"], r["errs"] + r["non2xx"],
                                           100 * w.foreign)
    return r, w, line


# ---- syscalls (perf stat on tracepoints) ---------------------------------------

SYSCALLS = ("read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "accept", "accept4", "close", "connect",
            "socket", "setsockopt", "getsockopt", "getsockname", "shutdown", "timerfd_settime",
            "clock_gettime", "ioctl", "fcntl", "splice", "brk", "mmap", "munmap", "madvise")


def perf_works():
    if not os.access(PERF, os.X_OK):
        return False
    try:
        r = subprocess.run([PERF, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and b"raw_syscalls:sys_enter" in r.stderr and b"not supported" not in r.stderr


def syscalls(b, close, args, secs=3):
    """Count the balancer's syscalls during a short wrk run."""
    events = ["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + s for s in SYSCALLS]
    pids = ",".join(str(p) for p in b.pids)
    perf = subprocess.Popen(["taskset", "-c", str(CLIENT_CPU), PERF, "stat", "-x,", "-e", ",".join(events),
                             "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _running.append(perf)
    time.sleep(0.3)
    try:
        v, w, _ = run_wrk(wrk_args(b.port, args.conns, secs, close), b.name, None, secs)
    finally:
        if perf.poll() is None:
            perf.send_signal(signal.SIGINT)
        try:
            _, err = perf.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            perf.kill()
            _, err = perf.communicate()
        if perf in _running:
            _running.remove(perf)
    counts = {}
    for ln in err.decode(errors="replace").splitlines():
        f = ln.split(",")
        if len(f) > 3 and f[0].strip().isdigit():
            counts[f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "ALL")] = int(f[0])
    reqs = v["requests"]
    if not reqs or "ALL" not in counts:
        return None, "  syscalls %-8s perf counted nothing" % b.name
    per = {k: c / reqs for k, c in counts.items() if c}
    top = sorted(((k, x) for k, x in per.items() if k != "ALL"), key=lambda kv: -kv[1])
    line = "  syscalls %-8s %-9s %.2f per request (%d requests, perf stat over the run): %s" % (
        b.name, "close" if close else "keepalive", per["ALL"], reqs,
        " ".join("%s %.2f" % kv for kv in top if kv[1] >= 0.01))
    return per["ALL"], line


# ---- parser microbenchmark -----------------------------------------------------

def parser(tmp, iters):
    exe = os.path.join(tmp, "http1_parse")
    srcs = sorted(os.path.join("src", "proto", f) for f in os.listdir(os.path.join(ROOT, "src", "proto"))
                  if f.startswith("http1") and f.endswith(".c"))
    cmd = [CC, "-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-Isrc", "bench/micro/http1_parse.c"] + \
        srcs + ["-o", exe]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120)
    if r.returncode != 0:
        die("building the parser microbenchmark failed:\n%s" % r.stderr.decode(errors="replace"))
    best, outs = None, []
    for _ in range(3):     # the least disturbed of three runs
        r = subprocess.run(["taskset", "-c", str(BAL_CPU), exe, str(iters)], capture_output=True,
                           timeout=60)
        out = r.stdout.decode(errors="replace")
        m = re.search(r"^request\s+\((\d+) bytes, (\d+) fields\):\s+([\d.]+) ns/parse", out, re.M)
        if r.returncode != 0 or not m:
            die("parser microbenchmark failed (rc=%d):\n%s%s" % (r.returncode, out,
                                                                  r.stderr.decode(errors="replace")))
        ns = float(m.group(3))
        if best is None or ns < best[0]:
            best = (ns, out)
        outs.append(ns)
    return best[0], best[1], outs, " ".join(cmd[:-2] + ["-o", "/tmp/http1_parse"])


# ---- blind relays: the floor of the kernel's work ---------------------------

def start_relays(tmp, origin_ports):
    """Build bench/micro/relay_io.c and start one relay per entry of RELAYS
    on BAL_CPU in front of the origins; {name: Balancer}."""
    exe = os.path.join(tmp, "relay_io")
    cmd = [CC, "-O2", "-std=gnu11", "bench/micro/relay_io.c", "-o", exe, "-luring"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120)
    if r.returncode != 0:
        die("building the relay (liburing-dev, from scripts/deps.sh) failed:\n%s" %
            r.stderr.decode(errors="replace"))
    out = {}
    for name in RELAYS:
        port = benchlib.free_port()
        p = benchlib.start(name, [exe, relay_model(name), str(port), ",".join(map(str, origin_ports))],
                           BAL_CPU, tmp)
        benchlib.wait_port(port, p)
        b = benchlib.Balancer(name, port, p)
        try:
            st = [x[0] for x in http_get(port, n=3)]
        except OSError as e:
            die("%s: request through it failed: %s" % (name, e))
        if st != [200] * 3:
            die("%s: statuses %s through it" % (name, st))
        out[name] = b
    return out


# ---- report ----------------------------------------------------------------

def table(rows, order):
    """rows: (label, {column: value}, decimals, ratios?)."""
    cols = list(order)
    ratio_cols = [("sluice/" + p) for p in order if p != "sluice" and "sluice" in order]
    head = ["metric"] + cols + ratio_cols
    lines = []
    for label, vals, nd, ratios in rows:
        cells = [label] + [benchlib.fmt(vals.get(c), nd) for c in cols]
        for rc in ratio_cols:
            other = rc.split("/")[1]
            a, b = vals.get("sluice"), vals.get(other)
            cells.append("%.2f" % (a / b) if ratios and a is not None and b and b > 0 and a >= 0 else "-")
        lines.append(cells)
    return render_table(head, lines)


def git_head():
    try:
        h = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                           timeout=5).stdout.decode().strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, timeout=5).stdout.strip()
        return (h or "?") + (" (src/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def targets(res, only):
    s = res.get("sluice", {})
    out = ["targets:"]

    def ratio_line(test, other, target, aim=None):
        a = s.get(test, {}).get("per_cpu")
        b = res.get(other, {}).get(test, {}).get("per_cpu")
        if not a or not b:
            return
        r = a / b
        out.append("  %-16s requests per CPU-s sluice/%-7s = %.2f  (target >= %.2f%s): %s" % (
            test, other, r, target, ", aim %.2f" % aim if aim else "",
            ("met" if r >= target else "MISSED") + (", aim met" if aim and r >= aim else "")))
    for t in LOADS:
        ratio_line(t, "haproxy", 1.0, 1.3)
        ratio_line(t, "nginx", 1.5)
    if "latency" in s and "latency" in res.get("haproxy", {}):
        a, b = s["latency"]["add_p99"], res["haproxy"]["latency"]["add_p99"]
        out.append("  p99 added latency sluice %d us vs haproxy %d us (target <= haproxy's): %s" % (
            a, b, "met" if a <= b else "MISSED"))
    for relay in RELAYS:
        for t, how in (("keepalive", ""), ("capped_keepalive", ", capped")):
            a = res.get(relay, {}).get(t, {}).get("per_cpu")
            b = res.get("nginx", {}).get(t, {}).get("per_cpu")
            c = s.get(t, {}).get("per_cpu")
            if a and b and c:
                out.append("  floor%s: a blind %s relay (no HTTP work) makes %.0f keep-alive requests per CPU-s"
                           " (%.1f us/req, user %.1f) = %.2fx nginx; sluice reaches %.0f%% of it" % (
                               how, relay_model(relay), a, res[relay][t]["cpu_us"],
                               res[relay][t]["user_us"], a / b, 100 * c / a))
    if "idle" in s:
        v = s["idle"]["rss_per_conn"]
        out.append("  RSS per idle keep-alive client connection %.2f KB (target <= 0.50 KB): %s" % (
            v, "met" if v <= 0.5 else "MISSED"))
    for p in only:
        for t in LOADS:
            r = res.get(p, {}).get(t)
            if r and (r["errs"] or r["non2xx"]):
                out.append("  WARNING: %s %s: %d socket errors, %d non-2xx responses" % (
                    p, t, r["errs"], r["non2xx"]))
    return "\n".join(out) if len(out) > 1 else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 8)),
                    help="keep-alive / close window per balancer, seconds (default 8)")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 1)),
                    help="repeat keepalive/close/latency N times, the table shows the median (default 1)")
    ap.add_argument("--lat-duration", type=int, default=5, help="latency window, seconds (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="wrk warm-up before each window (default 1)")
    ap.add_argument("--conns", type=int, default=50, help="wrk connections, keepalive/close (default 50)")
    ap.add_argument("--lat-conns", type=int, default=4, help="wrk connections, latency (default 4)")
    ap.add_argument("--lat-pace-ms", type=int, default=0,
                    help="latency: each connection waits this long after a response before its next"
                         " request (wrk delay()), for a moderate steady rate; 0 = flat out (default 0)")
    ap.add_argument("--idle-conns", type=int, default=5000,
                    help="idle keep-alive client connections for the RSS test (default 5000)")
    ap.add_argument("--idle-batch", type=int, default=50,
                    help="idle connections opened (requests in flight) at a time (default 50)")
    ap.add_argument("--parser-iters", type=int, default=3000000,
                    help="iterations of the parser microbenchmark (default 3000000)")
    ap.add_argument("--origins", type=int, default=3)
    ap.add_argument("--cap", type=float, default=0.5,
                    help="capped: the share of one CPU each balancer gets (default 0.5)")
    ap.add_argument("--relays", default=",".join(map(relay_model, RELAYS)),
                    help="floor: relay_io I/O models (epoll, uring, uring-ssend, upoll, upoll-qsend;"
                         " default epoll)")
    ap.add_argument("--wait-quiet", type=float, default=20,
                    help="wait up to S seconds for an idle machine before starting (default 20)")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-measure a window disturbed by other processes up to N times (default 2)")
    ap.add_argument("--only", default=",".join(PROXIES), help="subset, e.g. sluice,haproxy")
    ap.add_argument("--tests", default=",".join(TESTS), help="subset of " + ",".join(TESTS))
    ap.add_argument("--out", default=None, help="results file (default bench/results/http-<date>.txt)")
    args = ap.parse_args()
    only = [p for p in PROXIES if p in args.only.split(",")]
    RELAYS[:] = ["relay-" + r for r in args.relays.split(",") if r]
    tests = [t for t in TESTS if t in args.tests.split(",")]
    if not only or not tests:
        die("nothing to do (--only %s --tests %s)" % (args.only, args.tests))
    if os.cpu_count() < 2:
        die("needs 2 CPUs (balancer on CPU 0, client and origins on CPU 1)")
    benchlib.need_binaries([SLUICE, ORIGIN, WRK, CURL] + ([HAPROXY] if "haproxy" in only else []) +
                           ([NGINX] if "nginx" in only else []))
    if "capped" in tests and not benchlib.cgroup_cpu_root():
        log("http bench: no writable CPU cgroup here; skipping the capped test")
        tests.remove("capped")
    if "syscalls" in tests and not perf_works():
        log("http bench: perf cannot count syscall tracepoints here; skipping the syscalls test")
        tests.remove("syscalls")
    n = len(only)
    per_load = args.warmup + args.duration + 1
    per_lat = args.warmup + args.lat_duration + 1
    budget = 15 + ("latency" in tests) * 5 + ("idle" in tests) * n * 6 + ("syscalls" in tests) * n * 9 + ("parser" in tests) * 15 + \
        ("floor" in tests) * 5 + \
        args.rounds * (("keepalive" in tests) * n * per_load + ("close" in tests) * n * per_load +
                       ("floor" in tests) * len(RELAYS) * per_load +
                       ("capped" in tests) * (2 * n + ("floor" in tests) * len(RELAYS)) * per_load +
                       ("latency" in tests) * (n + 1) * per_lat)
    if budget > WATCHDOG_S - 40:
        die("this run would take about %.0fs (limit %ds): shorter windows or fewer tests" % (budget, WATCHDOG_S))
    slack = [WATCHDOG_S - 40 - budget]

    # the idle test holds thousands of sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.idle_conns + 1000
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            die("RLIMIT_NOFILE hard limit %d is below the %d the idle test needs (--idle-conns)" % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    benchlib.install_signals(WATCHDOG_S)

    os.sched_setaffinity(0, {CLIENT_CPU})   # this script is a client too (idle test)
    bg = benchlib.wait_idle(args.wait_quiet)
    signal.alarm(WATCHDOG_S)   # started after the quiet wait, which has its own bound
    t_run = time.monotonic()
    global sluice_built
    sluice_built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(SLUICE).st_mtime))
    tmp = tempfile.mkdtemp(prefix="sluice-bench-http-")
    benchlib.tmpdirs.append(tmp)
    res = {p: {} for p in only + list(RELAYS)}
    res["direct"] = {}
    mlog = []

    def record(line):
        log(line)
        mlog.append(line)

    rnd_tag = [""]

    def measured(fn):
        """fn() -> (result, window, line); re-measure a disturbed window while
        the time budget allows, and keep the least disturbed attempt."""
        best = None
        for attempt in range(1 + args.retries):
            r, w, line = fn()
            r["noisy"] = noisy(w, MAX_FORKS)
            r["others"] = w.foreign
            if r["noisy"]:
                line += noise_note(w)
            record(line.replace("  ", "  " + rnd_tag[0], 1))
            if best is None or (r["noisy"], r["others"]) < (best["noisy"], best["others"]):
                best = r
            cost = w.wall + args.warmup + 2
            if not r["noisy"] or slack[0] < cost:
                break
            slack[0] -= cost
            time.sleep(1)
        if best is not r:
            record("    (kept the attempt where other processes took %.0f%% of a CPU)" % (100 * best["others"]))
        return best

    parse_out = build = ""
    try:
        names, ports = benchlib.start_origins(args.origins, tmp, ["--threads", "1", "--mode", "http"])
        bals = {p: start_balancer(p, TPL, tmp, ports) for p in only}
        lat_bals = {}
        check_forwarding(bals, names, ports)
        relays = start_relays(tmp, ports) if "floor" in tests else {}
        caps = {p: benchlib.CpuQuota(p, b.pids) for p, b in list(bals.items()) + list(relays.items())} \
            if "capped" in tests else {}

        if "idle" in tests:      # first, while the balancers are fresh
            for p in only:
                r, line = measure_idle(bals[p], args.idle_conns, args.idle_batch)
                record(line)
                res[p]["idle"] = r
                time.sleep(1)    # let it close the connections
        for rnd in range(args.rounds):
            # Rotate who goes first each round so drift does not favour one balancer.
            order = only[rnd % n:] + only[:rnd % n]
            rnd_tag[0] = "[round %d] " % (rnd + 1) if args.rounds > 1 else ""
            for t in ("keepalive", "close"):
                if t in tests:
                    for p in order:
                        res[p].setdefault(t, []).append(
                            measured(lambda: load(bals[p], t == "close", args)))
                if t == "keepalive" and "floor" in tests:
                    for p in RELAYS:
                        res[p].setdefault(t, []).append(measured(lambda: load(relays[p], False, args)))
            if "capped" in tests:
                for q in caps.values():
                    q.set(args.cap)
                for t in ("keepalive", "close"):
                    for p in order:
                        res[p].setdefault("capped_" + t, []).append(
                            measured(lambda: load(bals[p], t == "close", args, "capped")))
                    if t == "keepalive":     # with floor: the relays at the same cap
                        for p in relays:
                            res[p].setdefault("capped_" + t, []).append(
                                measured(lambda: load(relays[p], False, args, "capped")))
                for q in caps.values():
                    q.set(None)
            if "latency" in tests:
                if not lat_bals:
                    # One origin behind every balancer, as for direct: CPU 1
                    # then runs the same two processes (wrk, b1) in every case.
                    lat_bals.update({p: start_balancer(p, TPL, os.path.join(tmp, "lat"), ports[:1], p + "-lat")
                                     for p in only})
                    check_forwarding(lat_bals, names[:1], ports[:1])
                d = measured(lambda: latency(ports[0], "direct", None, args))
                res["direct"].setdefault("latency", []).append(d)
                for p in order:
                    res[p].setdefault("latency", []).append(
                        measured(lambda: latency(lat_bals[p].port, p, lat_bals[p], args)))
        rnd_tag[0] = ""
        if "syscalls" in tests:
            for p in only:
                for t in ("keepalive", "close"):
                    v, line = syscalls(bals[p], t == "close", args)
                    record(line)
                    res[p]["sys_" + t] = v
        # still alive and proxying after the load?
        for b in list(bals.values()) + list(lat_bals.values()) + list(relays.values()):
            if b.proc.poll() is not None:
                die("%s died during the bench:\n%s" % (b.name, tail(b.proc.bench_out)))
        check_forwarding(bals, names, ports)
        stop_all()
        if "parser" in tests:
            ns, parse_out, runs, build = parser(tmp, args.parser_iters)
            res.setdefault("sluice", {})["parser"] = ns
            record("  parser   request head: %s ns/parse (3 runs), best %.1f" % (
                " ".join("%.1f" % x for x in runs), ns))
    finally:
        stop_all()
    run_s = time.monotonic() - t_run
    # Several rounds: the median of the undisturbed windows (of all, if every
    # one was disturbed); error counts add up.
    nwin = {p: 0 for p in only}
    for p in list(only) + list(RELAYS) + ["direct"]:
        for t in LOADS + ("latency",):
            rs = res[p].get(t)
            if not isinstance(rs, list):
                continue
            if p in nwin:
                nwin[p] += sum(1 for r in rs if r["noisy"])
            use = [r for r in rs if not r["noisy"]] or rs
            agg = {}
            for k in rs[0]:
                vals = [r[k] for r in (rs if k in ("errs", "non2xx") else use) if r.get(k) is not None]
                if k in ("errs", "non2xx"):
                    agg[k] = sum(vals)
                elif vals and k != "noisy":
                    agg[k] = statistics.median(vals)
            agg["noisy"] = all(r["noisy"] for r in rs)
            res[p][t] = agg
    if "latency" in tests:     # added latency: balancer's percentile - direct's
        for p in only:
            for k in ("p50", "p90", "p99"):
                res[p]["latency"]["add_" + k] = res[p]["latency"][k] - res["direct"]["latency"][k]

    def col(t, k):
        return {p: res[p][t][k] for p in only if t in res[p] and res[p][t].get(k) is not None}

    rows = []
    capped = ", capped at %.2g CPU" % args.cap
    for t, label, shown in (("keepalive", "keep-alive", "keepalive" in tests),
                            ("close", "Connection: close", "close" in tests),
                            ("capped_keepalive", "keep-alive" + capped, "capped" in tests),
                            ("capped_close", "Connection: close" + capped, "capped" in tests)):
        if not shown:
            continue
        rows += [("%s req/s (higher better)" % label, col(t, "rps"), 0, True),
                 ("%s requests per balancer CPU-s (higher better)" % label, col(t, "per_cpu"), 0, True),
                 ("%s requests per CPU 0 busy-s, incl. softirq" % label, col(t, "per_core0"), 0, True),
                 ("%s balancer user-space CPU us per request (diagnostic)" % label, col(t, "user_us"), 1, True),
                 ("%s balancer CPU use %%" % label, {p: 100 * v for p, v in col(t, "util").items()}, 0, False),
                 ("%s errors (socket + non-2xx)" % label,
                  {p: res[p][t]["errs"] + res[p][t]["non2xx"] for p in only if t in res[p]}, 0, False)]
    if "latency" in tests:
        d = res["direct"]["latency"]
        rows += [("latency p50 through the balancer, us", col("latency", "p50"), 0, False),
                 ("latency p99 through the balancer, us", col("latency", "p99"), 0, False),
                 ("added latency p50 over direct, us (lower better)", col("latency", "add_p50"), 0, True),
                 ("added latency p90 over direct, us (lower better)", col("latency", "add_p90"), 0, True),
                 ("added latency p99 over direct, us (lower better)", col("latency", "add_p99"), 0, True)]
    if "idle" in tests:
        rows.append(("RSS per idle keep-alive client conn, KB (lower better)",
                     col("idle", "rss_per_conn"), 2, True))
    if "syscalls" in tests:
        rows += [("syscalls per request, keep-alive (diagnostic)",
                  {p: res[p]["sys_keepalive"] for p in only if res[p].get("sys_keepalive")}, 2, True),
                 ("syscalls per request, Connection: close (diagnostic)",
                  {p: res[p]["sys_close"] for p in only if res[p].get("sys_close")}, 2, True)]
    if "parser" in tests:
        rows.append(("parser: ns per browser request head (micro)",
                     {"sluice": res["sluice"]["parser"]}, 1, False))
    disturbed = nwin
    if any(disturbed.values()):
        rows.append(("windows disturbed (after retries)", disturbed, 0, False))

    now = datetime.datetime.now()
    notes = [
        "sluice HTTP/1.1 bench, %s (run took %.0fs)" % (now.strftime("%Y-%m-%d %H:%M:%S"), run_s),
        benchlib.host_note(),
        benchlib.versions_note(),
        "sluice binary: %s, built %s; git %s" % (SLUICE, sluice_built, git_head()),
        "balancers pinned to CPU %d (one worker/thread each); wrk, this script and %d sluice-origin"
        " (--threads 1) on CPU %d; loopback" % (BAL_CPU, args.origins, CLIENT_CPU),
        "background load before the run: %s" % benchlib.fmt_load(bg),
        "all: round-robin per request over the same origins, upstream keep-alive, access log off,"
        " no health checks; Host kept, X-Forwarded-For/-Proto/-Host, Forwarded and X-Request-Id"
        " (echoed on the response) written, X-Real-IP removed (benchlib.*_FORWARDING)",
        "haproxy: mode http, nbthread 1, option http-keep-alive, http-reuse always",
        "nginx: worker_processes 1, upstream keepalive 64, proxy_http_version 1.1, Connection \"\","
        " keepalive_requests 1000000",
        "sluice: mode http, workers 1, max_idle_connections 64 (per backend)",
        "capped: the keep-alive and close windows again, each balancer's processes in a CPU cgroup"
        " limited to %.2g of a CPU (period 10 ms), so that every balancer runs saturated" % args.cap,
        "floor: bench/micro/relay_io.c, a blind TCP relay (%s), one upstream connection"
        " per client, same load as keep-alive" % ", ".join(map(relay_model, RELAYS)),
        "keep-alive: wrk -t1 -c%d -d%ds (after a %ds warm-up); close: the same with -H 'Connection: close'"
        % (args.conns, args.duration, args.warmup),
        "latency: wrk -t1 -c%d -d%ds --latency, %s, through a second instance of"
        " each balancer with origin b1 only; direct = the same to b1; added = balancer - direct"
        % (args.lat_conns, args.lat_duration,
           "each connection pausing %d ms after each response (wrk delay())" % args.lat_pace_ms
           if args.lat_pace_ms else "closed loop, no pause"),
        "idle: %d connections, each GET / then idle, %d at a time; (VmRSS after - before) / N, before ="
        " after a %d-connection warm-up, fresh balancer; nginx = master + worker"
        % (args.idle_conns, args.idle_batch, 2 * args.idle_batch),
        "balancer CPU = utime+stime from /proc/PID/stat (nginx: master+worker); %s" % (
            "one window per figure" if args.rounds == 1 else
            "median of %d rounds (order rotated per round; undisturbed windows where there are any)"
            % args.rounds),
        "CPU 0 busy = all non-idle time of CPU 0 from /proc/stat (the balancer plus the softirq network"
        " work the kernel ran there; only the balancer is pinned there)",
    ]
    if "latency" in tests:
        d = res["direct"]["latency"]
        notes.append("direct to origin b1: p50 %d us, p90 %d us, p99 %d us, %.0f req/s" % (
            d["p50"], d["p90"], d["p99"], d["rps"]))
    text = benchlib.report(notes, table(rows, only), sum(disturbed.values()), targets(res, only))
    text += "\nper window:\n" + "\n".join(mlog) + "\n"
    if parse_out:
        text += "\nparser microbenchmark (%s, best of 3):\n%s" % (build, parse_out)
    benchlib.write_results(text, args.out, "http", now)
    cleanup()
    signal.alarm(0)


if __name__ == "__main__":
    benchlib.run_main(main)
