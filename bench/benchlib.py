"""Helpers shared by the benchmark drivers (bench/l4.py, bench/http.py,
bench/failover.py, bench/balance_quality.py), so that they start, watch and
stop processes, and measure noise, the same way.

Not a script. A driver imports it with its own directory moved to the END of
sys.path (bench/http.py would otherwise shadow the standard library's http
package, which bench/failover.py uses):

    HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
    import benchlib

then calls setup("<name> bench") first thing, for the prefix of die()'s
message. Module state (started, extra_pids, ours, tmpdirs) lives here, so
that stop_all() and cleanup() see every process and directory of the run;
drivers change these lists and sets in place and never rebind them.
Stdlib only. Only PIDs the driver started are ever signalled.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import signal
import socket
import string
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "sluice"))
ORIGIN = os.environ.get("ORIGIN_BIN", os.path.join(ROOT, "sluice-origin"))
HAPROXY = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
WRK = os.environ.get("WRK_BIN", "/usr/bin/wrk")
CURL = os.environ.get("CURL_BIN", "/usr/bin/curl")
CC = os.environ.get("CC", "cc")
BAL_CPU, CLIENT_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISE = 0.05                 # other processes above 5% of a CPU: a window is disturbed

started = []                 # Popen objects we started, in order
extra_pids = []              # nginx worker pids (not our children, but ours)
ours = set()                 # pids of the bench's own load processes (wrk, loadgen) while they run
tmpdirs = []                 # removed by cleanup()
cgroups = []                 # CpuQuota groups, removed by cleanup() once their processes are gone
_name = ["bench"]            # prefix of die()'s message, set by setup()
_cleanup_hooks = []          # run by cleanup() before the processes are stopped


def setup(name, on_cleanup=None):
    """name: how die() names the driver ("l4 bench"); on_cleanup: a function
    cleanup() calls first (a driver's own loose ends)."""
    _name[0] = name
    if on_cleanup:
        _cleanup_hooks.append(on_cleanup)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(_name[0] + ": " + msg)
    cleanup()
    sys.exit(1)


def run_main(main, cleanup_after=True):
    """The drivers' `if __name__ == "__main__"` body."""
    try:
        main()
    except KeyboardInterrupt:
        die("interrupted")
    finally:
        if cleanup_after:
            cleanup()


def install_signals(watchdog_s):
    """SIGALRM (the watchdog; the caller arms it with signal.alarm) and
    SIGTERM end the run through die()."""
    def on_alarm(*_):
        die("watchdog: the bench ran over %ds" % watchdog_s)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda *_: die("terminated"))


def need_binaries(paths):
    for path in paths:
        if not os.access(path, os.X_OK):
            die("missing %s (run `make all` / `make deps`)" % path)


# ---- processes ---------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(name, argv, cpu, tmp, stdout=None):
    """Start argv pinned to `cpu`, stderr (and stdout, unless given) to
    TMP/NAME.out, appended: a process started again under the same name
    keeps the earlier output in front of its own."""
    with open(os.path.join(tmp, name + ".out"), "ab") as out:
        p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=stdout or out, stderr=out,
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
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    started.clear()
    extra_pids.clear()


def cleanup():
    for hook in _cleanup_hooks:
        hook()
    stop_all()
    for q in list(cgroups):
        q.remove()
    for d in tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    tmpdirs.clear()


CG_V1 = "/sys/fs/cgroup/cpu"
CG_V2 = "/sys/fs/cgroup"


def cgroup_cpu_root():
    """(version, directory) where a CPU-limited group can be made, or None."""
    if os.path.exists(os.path.join(CG_V1, "cpu.cfs_quota_us")) and os.access(CG_V1, os.W_OK):
        return 1, CG_V1
    try:
        with open(os.path.join(CG_V2, "cgroup.subtree_control")) as f:
            if "cpu" in f.read().split() and os.access(CG_V2, os.W_OK):
                return 2, CG_V2
    except OSError:
        pass
    return None


class CpuQuota:
    """A CPU cgroup holding one balancer's processes (every thread), whose
    CPU time can be capped at a fraction of one CPU: set(0.5) limits them to
    half a CPU, set(None) lifts the limit. With the same cap for every
    balancer, each runs saturated, so requests per CPU-second compare them
    at the same load state (a balancer that finishes early otherwise sleeps
    and wakes more per request than one that is always busy)."""
    PERIOD_US = 10000

    def __init__(self, label, pids):
        root = cgroup_cpu_root()
        if not root:
            die("no writable CPU cgroup (v1 %s or v2 %s with the cpu controller)" % (CG_V1, CG_V2))
        self.v, base = root
        self.dir = os.path.join(base, "sluice-bench-%s-%d" % (label, os.getpid()))
        os.mkdir(self.dir)
        cgroups.append(self)
        for pid in pids:
            if self.v == 1:
                for tid in os.listdir("/proc/%d/task" % pid):
                    self._write("tasks", tid)
            else:
                self._write("cgroup.procs", str(pid))

    def _write(self, name, value):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(value)

    def set(self, fraction):
        if self.v == 1:
            self._write("cpu.cfs_period_us", str(self.PERIOD_US))
            self._write("cpu.cfs_quota_us", str(int(self.PERIOD_US * fraction)) if fraction else "-1")
        else:
            self._write("cpu.max", "%d %d" % (self.PERIOD_US * fraction, self.PERIOD_US) if fraction
                        else "max %d" % self.PERIOD_US)

    def remove(self):
        """After its processes ended: an empty group can be removed."""
        for _ in range(50):
            try:
                os.rmdir(self.dir)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        if self in cgroups:
            cgroups.remove(self)


def run_client(p, timeout, what, window=None):
    """Wait (at most timeout s) for the load client p (wrk, loadgen), inside
    `window` (a Window) if given; noise accounting counts p as the bench's
    own meanwhile. Returns (stdout, stderr). what: the client, for die()."""
    ours.add(p.pid)
    try:
        if window is None:
            return p.communicate(timeout=timeout)
        with window:
            return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        die("%s ran past its duration" % what)
    except BaseException:
        if p.poll() is None:    # die() from a signal handler: the client goes too
            p.kill()
            p.wait()
        raise
    finally:
        ours.discard(p.pid)


WRK_LUA = os.path.join(ROOT, "bench", "http", "latency.lua")


def wrk_window(url, secs, headers=(), conns=50, window=None, threads=1, cpus=CLIENT_CPU):
    """wrk -tTHREADS -cCONNS for secs against url on `cpus` (a taskset CPU
    list; CPU CLIENT_CPU by default), with the HTTP bench's Lua script;
    inside `window` (a Window) if given. Returns its BENCH line as a dict,
    with secs (the measured duration), refused (non-2xx answers) and errors
    (socket errors)."""
    argv = ["taskset", "-c", str(cpus), WRK, "-t%d" % threads, "-c%d" % conns, "-d%ds" % secs,
            "--timeout", "2s", "-s", WRK_LUA]
    for h in headers:
        argv += ["-H", h]
    p = subprocess.Popen(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    so, se = run_client(p, secs + 30, "wrk", window)
    out = so.decode(errors="replace")
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if p.returncode != 0 or not m:
        die("wrk failed (rc=%d):\n%s%s" % (p.returncode, out, se.decode(errors="replace")))
    v = {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
    v["secs"] = v["duration_us"] / 1e6
    v["refused"] = v["status"]
    v["errors"] = v["connect"] + v["read"] + v["write"] + v["timeout"]
    return v


def measured_wrk(b, url, secs, headers=(), warmup=1, settle=0.0, **wrk):
    """A warm-up (then settle seconds of quiet), then one wrk window on
    balancer b: requests, req/s, refused, errors, the balancer's CPU per
    request and requests per CPU-s, and whether other processes disturbed
    the window. wrk: more wrk_window() arguments (conns, threads, cpus)."""
    if warmup:
        wrk_window(url, warmup, headers, **wrk)
    time.sleep(settle)
    w = Window(b)
    v = wrk_window(url, secs, headers, window=w, **wrk)
    reqs = v["requests"]
    return dict(reqs=reqs, rps=reqs / v["secs"], secs=v["secs"], refused=v["refused"],
                passed=reqs - v["refused"], errors=v["errors"], cpu=w.cpu,
                cpu_us=1e6 * w.cpu / reqs if reqs else 0, per_cpu=reqs / w.cpu if w.cpu else 0,
                noisy=noisy(w, 10))


def curl_reaches(b, names, verb, workers=1):
    """2 x len(names) x workers curl requests through balancer b: each answer
    must be an origin's name, and every origin must answer. verb: what b does
    ("forward", "proxy"), for die(). workers: b's worker count (each worker
    keeps its own round-robin position, as NGINX's do). Returns the names
    seen."""
    seen = set()
    for _ in range(2 * len(names) * workers):
        r = subprocess.run([CURL, "-sS", "--max-time", "5", "http://127.0.0.1:%d/" % b.port],
                           capture_output=True, timeout=10)
        body = r.stdout.decode(errors="replace").strip()
        if r.returncode != 0 or body not in names:
            die("%s does not %s: curl rc=%d body=%r err=%r" % (
                b.name, verb, r.returncode, body[:80], r.stderr.decode(errors="replace")[:200]))
        seen.add(body)
    if seen != set(names):
        die("%s reached only %s of %s" % (b.name, sorted(seen), names))
    return seen


def start_origins(n, tmp, extra=(), cpus=CLIENT_CPU):
    """n sluice-origin processes b1..bn on `cpus` (a taskset CPU list; CPU
    CLIENT_CPU by default), on free ports; returns (names, ports)."""
    names, ports = [], []
    for i in range(n):
        name = "b%d" % (i + 1)
        port = free_port()
        p = start("origin-" + name, [ORIGIN, "--listen", "127.0.0.1:%d" % port, "--name", name] +
                  list(extra), cpus, tmp)
        wait_port(port, p)
        names.append(name)
        ports.append(port)
    log("%s: origins %s on CPU %s" % (_name[0], ", ".join("%s=%d" % x for x in zip(names, ports)), cpus))
    return names, ports


def nginx_argv(ntmp, cfg):
    return [NGINX, "-p", ntmp + "/", "-e", os.path.join(ntmp, "nginx-error.log"),
            "-c", cfg, "-g", "daemon off;"]


def nginx_workers(p, count=1):
    """The worker pids of the nginx master p, once there are `count` of them
    (bounded wait); they go on extra_pids, so that stop_all() ends them too."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        kids = children_of(p.pid)
        if len(kids) >= count:
            break
        time.sleep(0.05)
    else:
        die("nginx started no worker process")
    extra_pids.extend(kids)
    return kids


# ---- config templates (bench/l4/, bench/http/) -------------------------------

# What sluice does to every proxied HTTP request by default: Host kept,
# X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and RFC 7239
# Forwarded written, an X-Request-Id generated (and echoed on the response),
# X-Real-IP removed. The HTTP templates ask NGINX (${NGINX_FORWARDING}, in a
# location) and HAProxy (${HAPROXY_FORWARDING}, in a frontend, with `option
# forwardfor` in defaults) for the same, so that the three do the same work
# per request. HAProxy 2.6 has no `option forwarded`; uuid() is its request
# id generator.
NGINX_FORWARDING = "\n".join("            " + line for line in (
    'proxy_set_header Host $http_host;',
    'proxy_set_header X-Forwarded-For $remote_addr;',
    'proxy_set_header X-Forwarded-Proto $scheme;',
    'proxy_set_header X-Forwarded-Host $http_host;',
    'proxy_set_header Forwarded "for=$remote_addr;host=\\"$http_host\\";proto=$scheme";',
    'proxy_set_header X-Request-Id $request_id;',
    'proxy_set_header X-Real-IP "";',
    'add_header X-Request-Id $request_id always;'))
NGINX_GRPC_FORWARDING = NGINX_FORWARDING.replace("proxy_set_header", "grpc_set_header")
HAPROXY_FORWARDING = "\n".join("    " + line for line in (
    'unique-id-format %[uuid()]',
    'unique-id-header X-Request-Id',
    'http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]',
    'http-request set-header X-Forwarded-Host %[req.hdr(host)]',
    'http-request set-header Forwarded "for=%[src];host=\\"%[req.hdr(host)]\\";proto=%[ssl_fc,iif(https,http)]"',
    'http-request del-header X-Real-IP',
    'http-response set-header X-Request-Id %[unique-id]'))

def render(tpl_dir, name, tmp, **kw):
    """TPL_DIR/NAME.in with $TMPDIR and kw substituted, written to TMP/NAME."""
    with open(os.path.join(tpl_dir, name + ".in")) as f:
        text = string.Template(f.read()).substitute(TMPDIR=tmp, **kw)
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Balancer:
    def __init__(self, name, port, proc):
        self.name, self.port, self.proc = name, port, proc
        self.pids = [proc.pid]

    def cpu(self, user_only=False):
        return sum(proc_cpu_s(p, user_only) for p in self.pids)

    def rss_kb(self):
        return sum(proc_rss_kb(p) for p in self.pids)


def start_balancer(name, tpl_dir, tmp, origins, label=None, cpus=BAL_CPU, haproxy_server_opts="",
                   **kw):
    """Start balancer `name` (sluice, haproxy or nginx; process label
    `label`) from the templates in tpl_dir, with its files under tmp, in
    front of the origin ports, pinned to `cpus` (a taskset CPU list; CPU
    BAL_CPU by default); haproxy_server_opts: appended to each HAProxy
    `server` line (" proto h2"); kw: more template variables."""
    label = label or name
    os.makedirs(tmp, exist_ok=True)
    be = [("b%d" % (i + 1), "127.0.0.1:%d" % port) for i, port in enumerate(origins)]
    port = free_port()
    listen = "127.0.0.1:%d" % port
    if name == "sluice":
        cfg = render(tpl_dir, "sluice.yaml", tmp, LISTEN=listen, SLUICE_BACKENDS="\n".join(
            "      - {name: %s, address: %s}" % b for b in be), **kw)
        p = start(label, [SLUICE, "-c", cfg], cpus, tmp)
        wait_port(port, p)
        return Balancer("sluice", port, p)
    if name == "haproxy":
        cfg = render(tpl_dir, "haproxy.cfg", tmp, LISTEN=listen, HAPROXY_BACKENDS="\n".join(
            "    server %s %s%s" % (b + (haproxy_server_opts,)) for b in be),
            HAPROXY_FORWARDING=HAPROXY_FORWARDING, **kw)
        p = start(label, [HAPROXY, "-f", cfg, "-db"], cpus, tmp)
        wait_port(port, p)
        return Balancer("haproxy", port, p)
    ntmp = os.path.join(tmp, "nginx")
    os.makedirs(ntmp, exist_ok=True)
    cfg = render(tpl_dir, "nginx.conf", ntmp, LISTEN=listen, NGINX_BACKENDS="\n".join(
        "        server %s;" % b[1] for b in be), NGINX_FORWARDING=NGINX_FORWARDING,
        NGINX_GRPC_FORWARDING=NGINX_GRPC_FORWARDING, **kw)
    p = start(label, nginx_argv(ntmp, cfg), cpus, tmp)
    wait_port(port, p)
    b = Balancer("nginx", port, p)
    b.pids += nginx_workers(p, int(kw.get("WORKERS", 1)))
    return b


# ---- /proc -------------------------------------------------------------------

def proc_cpu_s(pid, user_only=False):
    """utime+stime (or utime alone) of a whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + (0 if user_only else int(fields[12]))) / CLK_TCK


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _procs():
    """(pid as a string, the fields of /proc/PID/stat after the command name)
    of every process; fields[1] is the parent's pid, fields[11] and [12] are
    utime and stime in clock ticks."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield d, fields


def children_of(pid):
    return [int(d) for d, fields in _procs() if int(fields[1]) == pid]


def core_times():
    """Per CPU from /proc/stat, in seconds: busy = user+nice+system+irq+softirq
    (not idle, iowait, steal)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                out[int(m.group(1))] = (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK
    return out


def background_load(secs=1.0):
    """Busy fraction of each CPU while nothing of ours runs load."""
    a = core_times()
    time.sleep(secs)
    b = core_times()
    return {c: (b[c] - a[c]) / secs for c in b if c in a}


def fmt_load(bg):
    """background_load()'s result as "cpu0 3%, cpu1 1%"."""
    return ", ".join("cpu%d %.0f%%" % (c, 100 * v) for c, v in sorted(bg.items()))


def wait_idle(limit):
    """Wait (at most limit s) until no CPU is more than 10% busy; warn if it
    never is. Returns the last background_load()."""
    end = time.monotonic() + limit
    bg = background_load()
    while max(bg.values()) > 0.10 and time.monotonic() < end:
        log("%s: machine busy (%s), waiting up to %.0fs more for quiet" % (
            _name[0], fmt_load(bg), end - time.monotonic()))
        bg = background_load(2.0)
    if max(bg.values()) > 0.10:
        log("%s: WARNING: the machine is not idle (CPU busy %s); numbers will be noisy" % (
            _name[0], fmt_load(bg)))
    return bg


def foreign_cpu():
    """CPU seconds so far (utime+stime) of each process that is not part of the
    bench; kernel threads left out. A process that starts and ends inside a
    window is missed: this is an indicator of a noisy neighbour, not an audit."""
    mine = {os.getpid()} | {p.pid for p in started} | set(extra_pids) | ours
    out = {}
    for d, fields in _procs():
        if int(d) in mine or d == "2" or fields[1] == "2":
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


def wait_quiet(limit):
    """Wait (at most limit s) until other processes use under 10% of a CPU;
    returns what they used in the last half second."""
    end = time.monotonic() + limit
    while True:
        f0 = foreign_cpu()
        time.sleep(0.5)
        f1 = foreign_cpu()
        busy = sum(max(0.0, v - f0.get(pid, 0.0)) for pid, v in f1.items()) / 0.5
        if busy < 0.10 or time.monotonic() >= end:
            return busy
        time.sleep(1.0)


class Window:
    """One measurement window: the CPU of the balancer `bal` (None: none),
    its user-space share, the busy time of each core, and how much CPU other
    processes on the machine took meanwhile and how many processes were
    started (own_forks of them are ours)."""
    def __init__(self, bal=None, own_forks=0):
        self.bal, self.own_forks = bal, own_forks

    def __enter__(self):
        self.f0 = foreign_cpu()
        self.n0 = forks()
        self.t0 = time.monotonic()
        self.c0 = self.bal.cpu() if self.bal else 0.0
        self.u0 = self.bal.cpu(user_only=True) if self.bal else 0.0
        self.k0 = core_times()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False        # no measurement (die(), for one, has stopped the balancer)
        self.t1 = time.monotonic()
        self.cpu = (self.bal.cpu() if self.bal else 0.0) - self.c0
        # User-space share: what the balancer's own code costs, as opposed to
        # the kernel's TCP work, which is about the same for all three.
        self.user = (self.bal.cpu(user_only=True) if self.bal else 0.0) - self.u0
        k1 = core_times()
        self.wall = self.t1 - self.t0
        self.core_s = {c: k1[c] - self.k0[c] for c in k1 if c in self.k0}
        self.core = {c: v / self.wall for c, v in self.core_s.items()}
        f1 = foreign_cpu()
        self.foreign = sum(max(0.0, v - self.f0.get(pid, 0.0)) for pid, v in f1.items()) / self.wall
        # The bench forks nothing else inside a window: new processes are
        # someone else's, and short-lived ones escape the scan above.
        self.forks = forks() - self.n0 - self.own_forks
        return False


def noisy(w, max_forks):
    """Was window w disturbed: other processes above NOISE of a CPU, or more
    than max_forks processes started during it?"""
    return w.foreign > NOISE or w.forks > max_forks


def noise_note(w):
    return "  DISTURBED: other processes took %.0f%% of a CPU, %d started" % (100 * w.foreign, w.forks)


# ---- report ------------------------------------------------------------------

def report(notes, table, disturbed, verdict):
    """The part of a results file that is printed (and printed here): the
    notes, the table, a warning if `disturbed` windows stayed disturbed after
    the retries, and the verdict on the targets (if any)."""
    text = "\n".join(notes) + "\n\n" + table + "\n"
    if disturbed:
        text += ("\nWARNING: other processes on this machine took more than %.0f%% of a CPU during %d"
                 " measurement window(s), even after retries; those numbers are not trustworthy."
                 " Run again on an idle machine.\n" % (100 * NOISE, disturbed))
    if verdict:
        text += "\n" + verdict + "\n"
    print(text, flush=True)
    return text


def fmt(v, nd):
    if v is None:
        return "-"
    return "%.*f" % (nd, v)


def render_table(head, rows):
    """A Markdown table: the first column left-aligned, the others right."""
    w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(head)) + " |",
           "|" + "|".join("-" * (x + 2) if i == 0 else "-" * (x + 1) + ":" for i, x in enumerate(w)) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])
                                      for i, c in enumerate(r)) + " |")
    return "\n".join(out)


def version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=5)
        return (r.stdout + r.stderr).decode(errors="replace").splitlines()[0].strip()
    except Exception:
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def host_note():
    return "host: %s, %d CPUs (%s), kernel %s" % (platform.node(), os.cpu_count(), cpu_model(),
                                                  platform.release())


def versions_note(with_path=False):
    """The three balancers' versions; with_path: sluice's binary too."""
    return "sluice: %s%s | haproxy: %s | nginx: %s" % (
        version([SLUICE, "--version"]), " (%s)" % SLUICE if with_path else "",
        version([HAPROXY, "-v"]), version([NGINX, "-v"]))


def write_results(text, out, stem, now):
    """Write text to out, or to bench/results/STEM-<date>.txt."""
    outp = out or os.path.join(ROOT, "bench", "results", "%s-%s.txt" % (stem, now.strftime("%Y%m%d-%H%M%S")))
    os.makedirs(os.path.dirname(outp), exist_ok=True)
    with open(outp, "w") as f:
        f.write(text)
    log("written to %s" % os.path.relpath(outp, ROOT))



# ---- the side-by-side drivers of one feature (rate_limit, tls, auth) ---------

PEERS = ("sluice", "haproxy", "nginx")


def peer_args(doc, stem, extra=None):
    """The command line every feature driver takes (--duration, --rounds,
    --only, --out) plus extra(ap)'s. Returns (args, the balancers chosen)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per window (default 5)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, the table shows medians (default 2)")
    ap.add_argument("--only", default=",".join(PEERS), help="subset, e.g. sluice,nginx")
    ap.add_argument("--out", default=None, help="results file (default bench/results/%s-<date>.txt)" % stem)
    if extra:
        extra(ap)
    args = ap.parse_args()
    only = [p for p in PEERS if p in args.only.split(",")]
    if not only:
        die("nothing to do (--only %s)" % args.only)
    return args, only


def peer_start(name, only, budget_s, watchdog_s, binaries=()):
    """Checks and set-up before a feature driver's windows: 2 CPUs, a run
    that fits its watchdog, the binaries, signals, this script on the client
    CPU, a quiet machine, then the watchdog. Returns (background load before
    the run, the run's start time)."""
    if os.cpu_count() < 2:
        die("needs 2 CPUs (balancer on CPU 0, client and origin on CPU 1)")
    if 20 + budget_s > watchdog_s - 20:
        die("this run would take too long: fewer rounds or shorter windows")
    setup(name)
    need_binaries([SLUICE, ORIGIN, WRK, CURL] + list(binaries) +
                  ([HAPROXY] if "haproxy" in only else []) + ([NGINX] if "nginx" in only else []))
    install_signals(watchdog_s)
    os.sched_setaffinity(0, {CLIENT_CPU})
    bg = wait_idle(20)
    signal.alarm(watchdog_s)     # after the quiet wait, which has its own bound
    return bg, time.monotonic()


def peer_table(res, only, sections, metrics):
    """A table of medians: for each (section, label) of sections and each
    (key, what, fmt) of metrics, a row "label: what" with each balancer's
    median of res[balancer][section][i][key], then sluice's ratios."""
    peers = [o for o in ("haproxy", "nginx") if o in only and "sluice" in only]
    head = ["metric"] + only + ["sluice/" + o for o in peers]
    rows = []
    for t, label in sections:
        for key, what, fmt in metrics:
            vals = {p: statistics.median(r[key] for r in res[p][t]) for p in only}
            rows.append(["%s: %s" % (label, what)] + [fmt % vals[p] for p in only] +
                        ["%.2f" % (vals["sluice"] / vals[o]) if vals[o] else "-" for o in peers])
    return head, rows


OPENSSL = "/usr/bin/openssl"


def make_cert(tmp, names):
    """An ECDSA P-256 self-signed certificate for the DNS names (the first is
    the CN), made by the openssl command: (cert, key, both in one file)."""
    cert, key, both = (os.path.join(tmp, n) for n in ("cert.pem", "key.pem", "both.pem"))
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + names[0],
                    "-addext", "subjectAltName=" + ",".join("DNS:" + n for n in names)],
                   check=True, capture_output=True, timeout=30)
    with open(both, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, both


def peer_report(stem, title, t_run, bg, args, setup, head, rows, lines, extra=""):
    """Print and save a feature driver's results: the run's notes (title,
    host, versions, setup lines, background load, rounds), the table, extra
    text, and the per-window lines, to bench/results/STEM-<date>.txt."""
    notes = ["sluice %s bench, %s (run took %.0fs)" % (
                 title, datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                 time.monotonic() - t_run),
             host_note(), versions_note()] + list(setup[:1]) + \
        ["background load before the run: %s" % fmt_load(bg)] + list(setup[1:]) + \
        ["median of %d rounds, %ds windows, order rotated per round" % (args.rounds, args.duration)]
    text = "\n".join(notes) + "\n\n" + render_table(head, rows) + "\n\n" + extra + \
        "per window:\n" + "\n".join(lines) + "\n"
    print(text)
    write_results(text, args.out, stem, datetime.datetime.now())


def peer_rounds(bals, only, rounds, secs, windows):
    """The feature drivers' windows: each round, for each (name, headers) of
    windows, each balancer in an order rotated per round; wrk keep-alive
    against the balancer's port. Checks after the last that every balancer
    is still running. Returns ({balancer: {name: [result, ...]}}, the per-
    window lines)."""
    res = {p: {t: [] for t, _ in windows} for p in only}
    lines = []
    for rnd in range(rounds):
        order = only[rnd % len(only):] + only[:rnd % len(only)]
        for t, headers in windows:
            for p in order:
                r = measured_wrk(bals[p], "http://127.0.0.1:%d/" % bals[p].port, secs, headers)
                res[p][t].append(r)
                line = "  [round %d] %-7s %-5s %8.0f req/s  %8.1f us CPU/req  %8.0f req/CPU-s  " \
                       "refused %d  errors %d%s" % (
                           rnd + 1, p, t, r["rps"], r["cpu_us"], r["per_cpu"], r["refused"],
                           r["errors"], "  DISTURBED" if r["noisy"] else "")
                log(line)
                lines.append(line)
    for p, b in bals.items():
        if b.proc.poll() is not None:
            die("%s died during the bench" % p)
    return res, lines
