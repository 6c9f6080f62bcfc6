"""Pieces of the benchmarks that run a paced client against origins that
come and go (bench/failover.py, bench/discovery.py): an origin that can be
killed and restarted, a fixed-rate keep-alive client that records every
request (and which origin answered it, from X-Origin), and a warm-up.
Stdlib only."""
import http.client
import os
import statistics
import subprocess
import threading
import time

import benchlib
from benchlib import (BAL_CPU, CLIENT_CPU, HAPROXY, ORIGIN, SLUICE, die, free_port, start, tail,
                      wait_port)

POST_BODY = b"x" * 128

# The start of a haproxy.cfg `defaults` section the drivers share:
# keep-alive on both sides, the timeouts of their sluice configs.
HAPROXY_DEFAULTS = """defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 60s
    timeout server 10s
    timeout http-request 10s
    timeout http-keep-alive 60s
"""


def haproxy_cfg(text):
    """A haproxy.cfg with HAPROXY_DEFAULTS where text says @DEFAULTS@."""
    return text.replace("@DEFAULTS@", HAPROXY_DEFAULTS)


def nginx_conf(ntmp, http_body):
    """nginx.conf in ntmp, which holds every file nginx writes: one worker,
    no access log, long client keep-alive; http_body goes in `http {}`."""
    path = os.path.join(ntmp, "nginx.conf")
    with open(path, "w") as f:
        f.write("""worker_processes 1;
pid %(t)s/nginx.pid;
error_log %(t)s/nginx-error.log warn;
events { worker_connections 4000; }
http {
    access_log off;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path %(t)s/client_body_temp;
    proxy_temp_path %(t)s/proxy_temp;
    fastcgi_temp_path %(t)s/fastcgi_temp;
    uwsgi_temp_path %(t)s/uwsgi_temp;
    scgi_temp_path %(t)s/scgi_temp;
%(body)s}
""" % dict(t=ntmp, body=http_body))
    return path


def start_balancer(prod, tmp, sluice_cfg, haproxy_cfg, nginx_cfg):
    """Start one product pinned to BAL_CPU on a free port and wait for it.
    Each *_cfg(dir, port) writes that product's config in dir and returns
    its path (nginx's dir is its own, under tmp). Returns (port, process)."""
    port = free_port()
    if prod == "sluice":
        p = start("sluice", [SLUICE, "-c", sluice_cfg(tmp, port)], BAL_CPU, tmp)
    elif prod == "haproxy":
        p = start("haproxy", [HAPROXY, "-f", haproxy_cfg(tmp, port), "-db"], BAL_CPU, tmp)
    else:
        ntmp = os.path.join(tmp, "nginx")
        os.mkdir(ntmp)
        p = start("nginx", benchlib.nginx_argv(ntmp, nginx_cfg(ntmp, port)), BAL_CPU, tmp)
    wait_port(port, p)
    if prod == "nginx":
        benchlib.nginx_workers(p)
    return port, p


class Origin:
    """A sluice-origin that can be killed and started again on its address;
    `listening_at` is when it last printed "listening"."""

    def __init__(self, name, port, tmp, host="127.0.0.1"):
        self.name, self.port, self.tmp, self.host = name, port, tmp, host
        self.proc = None
        self.listening_at = None

    def start(self):
        self.listening_at = None
        self.proc = start("origin-" + self.name, [ORIGIN, "--listen", "%s:%d" % (self.host, self.port),
                                                  "--name", self.name], CLIENT_CPU, self.tmp,
                          stdout=subprocess.PIPE)
        threading.Thread(target=self._watch, args=(self.proc,), daemon=True).start()

    def _watch(self, p):
        line = p.stdout.readline()      # "listening HOST:PORT", printed once bound
        if line.startswith(b"listening"):
            self.listening_at = time.monotonic()
        p.stdout.close()

    def wait(self, timeout=5.0, fresh=False):
        """Until it listens. fresh: a first start on a port free_port() picked;
        if another program took the port meanwhile, try another one."""
        for attempt in range(5):
            end = time.monotonic() + timeout
            while self.listening_at is None and time.monotonic() < end:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.005)
            if self.listening_at is not None:
                return
            if fresh and self.proc.poll() is not None and \
                    "Address already in use" in tail(self.proc.bench_out, 3):
                benchlib.started.remove(self.proc)
                self.port = free_port()
                self.start()
                continue
            break
        die("origin %s did not listen on %d (exit status %s):\n%s" % (
            self.name, self.port, self.proc.poll(), tail(self.proc.bench_out)))

    def kill9(self):
        self.proc.kill()                # SIGKILL to the pid we started (taskset exec'd into it)
        self.proc.wait(timeout=5)
        benchlib.started.remove(self.proc)


# ---- the client --------------------------------------------------------------

class Client:
    """n threads, each one keep-alive connection (http.client), each paced to
    one request per `interval` seconds until `deadline`. Every request is
    recorded: (t_start, t_end, ok, status, origin, error)."""

    def __init__(self, port, method, n, interval, path):
        self.port, self.method, self.n, self.interval, self.path = port, method, n, interval, path
        self.records = []
        self.lock = threading.Lock()

    def run(self, t0, deadline):
        ths = [threading.Thread(target=self._loop, args=(i, t0, deadline), daemon=True)
               for i in range(self.n)]
        for t in ths:
            t.start()
        return ths

    def _loop(self, i, t0, deadline):
        conn = None
        nxt = t0 + i * self.interval / self.n
        recs = []
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if nxt > now:
                time.sleep(min(nxt - now, deadline - now))
                continue
            nxt += self.interval
            if nxt < now - self.interval:
                nxt = now               # fell behind: no catch-up burst
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            t1 = time.monotonic()
            try:
                if self.method == "POST":
                    conn.request("POST", self.path, body=POST_BODY, headers={"Content-Type": "text/plain"})
                else:
                    conn.request("GET", self.path)
                r = conn.getresponse()
                body = r.read()
                origin = r.getheader("X-Origin") or ""
                ok = 200 <= r.status < 300
                recs.append((t1, time.monotonic(), ok, r.status, origin,
                             "" if ok else " ".join(body[:80].decode(errors="replace").split())))
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                recs.append((t1, time.monotonic(), False, 0, "", type(e).__name__ + ": " + str(e)[:60]))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with self.lock:
            self.records.extend(recs)


def warm(port, names, timeout=5.0):
    """Requests until every origin has answered once (bounded)."""
    seen = set()
    end = time.monotonic() + timeout
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    while seen != set(names) and time.monotonic() < end:
        try:
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                seen.add(r.getheader("X-Origin"))
        except (OSError, http.client.HTTPException):
            conn.close()
            time.sleep(0.05)
    conn.close()
    if seen != set(names):
        die("balancer on %d reached only %s of %s" % (port, sorted(seen), names))




# ---- reporting times that may be "never" ---------------------------------------

def fmt_s(v):
    return "%.2f" % v if v is not None else "never"


def median_or_never(vals):
    """The median, "never" (None) counting as longer than any time: of 0.4,
    never, 0.6 it is 0.6; of 0.4, never, never it is never."""
    srt = sorted(vals, key=lambda x: float("inf") if x is None else x)
    mid = srt[(len(srt) - 1) // 2:len(srt) // 2 + 1]
    return None if None in mid else statistics.mean(mid)


def ratio(a, b):
    """a / b as text, for lower-is-better figures that may be 0 or never."""
    if a is None or b is None:
        return "-"
    if b == 0:
        return "equal (0)" if a == 0 else "inf"
    return "%.2f" % (a / b)
