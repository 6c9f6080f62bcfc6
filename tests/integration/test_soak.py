"""A bounded soak: every kind of traffic at once (HTTP/1.1 and HTTP/2, in the
clear and over TLS, WebSocket tunnels, uploads, malformed and slow clients,
L4 TCP and UDP), while backends die and come back, the operator drains and re-enables
them and the config is reloaded.

The other tests each look at one thing; this one looks for what only shows
when they happen together: a crash, a sanitizer report (make test runs it
under ASan+UBSan too), a descriptor or connection leak, a hang, or traffic
that stops being served. SOAK_SECONDS (default 15) sets the load window;
run it longer by hand, e.g. SOAK_SECONDS=300.
"""
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from harness import WebSocketEcho, free_port, pid_running, recv_all, wait_for

SECONDS = float(os.environ.get("SOAK_SECONDS", "15"))
WRK = shutil.which("wrk")
H2LOAD = shutil.which("h2load")


def config(web, raw, admin, backends, variant, tls=None, ws=None, udp=None):
    """variant flips between reloads: a route's pool and weights change.
    tls: (port, cert, key) adds an HTTPS listener; ws: the address of a
    WebSocket echo origin, routed at /ws; udp: (port, [echo addresses]) adds
    a UDP listener in front of them."""
    addrs = "\n".join(f"      - {{name: {n}, address: '{a}', weight: {w}}}"
                      for (n, a), w in zip(backends, (1, 2, 1) if variant else (3, 1, 1)))
    tls_listener = f"""
  - name: secure
    bind: 127.0.0.1:{tls[0]}
    mode: http
    http2: true
    pool: app
    tls: {{certificates: [{{cert: '{tls[1]}', key: '{tls[2]}'}}]}}""" if tls else ""
    ws_route = """
      - match: {path_prefix: /ws}
        pool: ws""" if ws else ""
    ws_pool = f"""
  - name: ws
    backends:
      - {{name: echo, address: '{ws}'}}""" if ws else ""
    udp_listener = f"""
  - name: datagrams
    bind: 127.0.0.1:{udp[0]}
    mode: udp
    pool: echo
    timeouts: {{udp_idle: 1s}}""" if udp else ""
    udp_pool = """
  - name: echo
    backends:""" + "".join(f"""
      - {{name: u{i + 1}, address: '{a}'}}""" for i, a in enumerate(udp[1])) if udp else ""
    return f"""
workers: 2
log: {{level: info, access: off}}
admin: {{listen: 127.0.0.1:{admin}}}
listeners:
  - name: web
    bind: 127.0.0.1:{web}
    mode: http
    http2: true
    pool: app
    timeouts: {{client_header: 2s, client_idle: 5s}}
    routes:
      - match: {{path_prefix: /v{1 if variant else 2}/}}
        pool: app
        strip_prefix: /v{1 if variant else 2}
      - match: {{path: /teapot}}
        respond: {{status: 418, body: "short and stout"}}{ws_route}{tls_listener}{udp_listener}
  - name: raw
    bind: 127.0.0.1:{raw}
    mode: tcp
    pool: app
pools:
  - name: app
    balance: {'least_conn' if variant else 'round_robin'}
    retries: {{attempts: 2}}
    health_check: {{type: http, path: /health, interval: 300ms, timeout: 250ms,
                   healthy_threshold: 1, unhealthy_threshold: 1}}
    drain_timeout: 2s
    timeouts: {{upstream_idle: 2s}}
    backends:
{addrs}{ws_pool}{udp_pool}
"""


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Load:
    """Client threads that run until stop(), counting what they saw."""

    def __init__(self):
        self.stop_at = None
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []
        self.threads = []

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def fail(self, what):
        with self.lock:
            self.failures.append(what)

    def running(self):
        return time.monotonic() < self.stop_at

    def start(self, fn, *args):
        def run():
            try:
                fn(*args)
            except Exception as e:   # noqa: BLE001 - recorded and asserted on
                self.fail(f"{fn.__name__}: {e!r}")
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)


def uploads(load, port):
    """Bodies of random sizes to /echo: the origin got exactly what was sent."""
    rng = random.Random(1)
    while load.running():
        body = rng.randbytes(rng.choice((0, 1, 1000, 70_000, 300_000)))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request("POST", "/echo", body=body)
            r = c.getresponse()
            got = r.read()
            if r.status == 200:
                seen = json.loads(got)
                if (seen["body_length"], seen["body_sha256"]) != (len(body), hashlib.sha256(body).hexdigest()):
                    load.fail(f"{len(body)} bytes sent, the origin got {seen['body_length']} different ones")
                load.count("upload_ok")
            else:
                load.count(f"upload_{r.status}")
        except (OSError, http.client.HTTPException):
            load.count("upload_conn_error")   # a backend killed mid-body
        finally:
            c.close()


BAD = [
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00\xff\xff\xff\xff",
]


def bad_clients(load, port):
    """Malformed and smuggling-shaped requests and random bytes: each gets an
    error status or a close, never a hang."""
    rng = random.Random(2)
    while load.running():
        msg = rng.choice(BAD) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 3000))
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            load.count("bad_conn_error")
            continue
        try:
            s.sendall(msg)
            s.shutdown(socket.SHUT_WR)
            data = recv_all(s)
            m = re.match(rb"HTTP/1\.1 (\d{3})", data)
            load.count("bad_status_" + (m.group(1).decode() if m else "none"))
            if m and m.group(1) == b"200" and msg in BAD[:6]:
                load.fail(f"a smuggling-shaped request was served: {msg[:60]!r}")
        except socket.timeout:
            load.fail(f"no answer and no close within 5 s to {msg[:40]!r}")
        except OSError:
            load.count("bad_reset")
        finally:
            s.close()


def slow_clients(load, port):
    """Half-sent heads that stall: client_header must close them."""
    socks = []
    while load.running():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: slow\r\n")
            socks.append(s)
        except OSError:
            load.count("slow_conn_error")
        time.sleep(0.2)
    closed = 0
    for s in socks:
        try:
            s.settimeout(5)
            while s.recv(4096):
                pass
            closed += 1
        except OSError:
            closed += 1
        s.close()
    load.count("slow_closed", closed)


def tls_clients(load, port, ca):
    """HTTPS with keep-alive (ALPN http/1.1), a new connection every 20 requests."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    while load.running():
        try:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                 server_hostname="a.test") as s:
                for _ in range(20):
                    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                    r = http.client.HTTPResponse(s)
                    r.begin()
                    body = r.read()
                    load.count(f"tls_{r.status}")
                    if r.status == 200 and body.strip() not in (b"b1", b"b2", b"b3"):
                        load.fail(f"HTTPS answer from no origin: {body[:40]!r}")
                    if r.will_close:
                        break
        except (OSError, http.client.HTTPException):
            load.count("tls_conn_error")


def ws_clients(load, port, websockets):
    """WebSocket tunnels: what comes back is what was sent. A reload's drain
    may end a tunnel (counted), never corrupt one."""
    import asyncio

    async def one():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/chat", open_timeout=5) as ws:
            for i in range(50):
                msg = os.urandom(random.choice((10, 1000, 100_000)))
                await ws.send(msg)
                if await asyncio.wait_for(ws.recv(), 5) != msg:
                    load.fail("a WebSocket message came back changed")
                    return
        load.count("ws_ok")

    while load.running():
        try:
            asyncio.run(one())
        except websockets.exceptions.ConnectionClosed:
            load.count("ws_cut")
        except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
            load.count("ws_" + type(e).__name__)


def udp_clients(load, port):
    """UDP flows through the datagram listener: an answer is the datagram
    sent, tagged by the echo origin; a lost one is counted (UDP may drop,
    and a reload moves flows to the new process)."""
    rng = random.Random(3)
    while load.running():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(1)
            for i in range(20):
                msg = b"%d:" % i + rng.randbytes(rng.choice((1, 100, 1400)))
                u.sendto(msg, ("127.0.0.1", port))
                try:
                    data, _ = u.recvfrom(65536)
                except socket.timeout:
                    load.count("udp_lost")
                    continue
                tag, _, echoed = data.partition(b":")
                if echoed != msg or tag not in (b"u1", b"u2"):
                    load.fail(f"UDP answer {data[:30]!r} to {msg[:10]!r}")
                    return
                load.count("udp_ok")


def raw_tcp(load, port):
    """The L4 listener in front of the same backends."""
    while load.running():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: l4\r\nConnection: close\r\n\r\n")
                data = recv_all(s)
            load.count("l4_ok" if data.startswith(b"HTTP/1.1 200") else "l4_other")
        except OSError:
            load.count("l4_conn_error")


def flapper(load, procs, origins, ports):
    """Kill one backend and bring it back on the same port, in turn."""
    i = 0
    while load.running():
        time.sleep(1.0)
        k = i % len(origins)
        origins[k].stop(signal.SIGKILL)
        time.sleep(0.5)
        origins[k] = procs.origin(f"b{k + 1}", port=ports[k])
        load.count("flaps")
        i += 1


def operator(load, s, admin, web, raw, backends, extra):
    """Drain / enable backends over the admin API; reload with a changed config."""
    variant = True
    names = [n for n, _ in backends]
    i = 0
    while load.running():
        time.sleep(0.7)
        name = names[i % len(names)]
        for action in ("drain", "enable"):
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
            try:
                c.request("POST", f"/api/v1/pools/app/backends/{name}/{action}")
                r = c.getresponse()
                r.read()
                load.count(f"admin_{r.status}")
            except (OSError, http.client.HTTPException):
                load.count("admin_conn_error")     # the admin socket changing hands
            finally:
                c.close()
        if i % 4 == 3:
            variant = not variant
            with open(s.config, "w") as f:
                f.write(config(web, raw, admin, backends, variant, **extra))
            s.reload()
            load.count("reloads")
        i += 1


@pytest.mark.skipif(not WRK, reason="wrk not installed")
def test_everything_at_once_while_backends_flap_and_config_reloads(procs, pki, request):
    websockets = pytest.importorskip("websockets")
    import websockets.server  # noqa: F401
    echo = WebSocketEcho(websockets)
    request.addfinalizer(echo.stop)
    origins = [procs.origin(f"b{i + 1}") for i in range(3)]
    ports = [o.port for o in origins]
    backends = [(f"b{i + 1}", o.address) for i, o in enumerate(origins)]
    web, raw, admin, secure = free_port(), free_port(), free_port(), free_port()
    udp = free_port()
    udp_echo = [procs.origin(f"u{i}", mode="udp-echo", extra=("--udp-tag",)) for i in (1, 2)]
    extra = {"tls": (secure,) + pki["a"], "ws": f"127.0.0.1:{echo.port}",
             "udp": (udp, [o.address for o in udp_echo])}
    s = procs.sluice(config(web, raw, admin, backends, True, **extra),
                     wait_ports=[web, raw, admin, secure])
    ca = pki["ca"]

    load = Load()
    load.stop_at = time.monotonic() + SECONDS
    secs = max(1, int(SECONDS))
    clients = [subprocess.Popen([WRK, "-t1", "-c16", f"-d{secs}s", "--timeout", "5s",
                                 f"http://127.0.0.1:{web}/v1/"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
               subprocess.Popen([WRK, "-t1", "-c4", f"-d{secs}s", "--timeout", "5s",
                                 "-H", "Connection: close", f"http://127.0.0.1:{web}/teapot"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    if H2LOAD:
        clients += [subprocess.Popen([H2LOAD, "-c2", "-m8", "-D", str(secs), url],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                    for url in (f"http://127.0.0.1:{web}/v2/", f"https://127.0.0.1:{secure}/")]
    for fn, args in ((uploads, (web,)), (uploads, (web,)), (bad_clients, (web,)),
                     (slow_clients, (web,)), (raw_tcp, (raw,)), (tls_clients, (secure, ca)),
                     (ws_clients, (web, websockets)), (udp_clients, (udp,)),
                     (flapper, (procs, origins, ports)),
                     (operator, (s, admin, web, raw, backends, extra))):
        load.start(fn, load, *args)
    outs = [c.communicate(timeout=SECONDS + 60)[0].decode(errors="replace") for c in clients]
    for t in load.threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a client thread hung"

    print("soak counts:", dict(sorted(load.counts.items())))     # pytest -s shows them
    assert pid_running(s.serving_pid()), s.stderr()[-3000:]
    assert not load.failures, load.failures[:10]
    c = load.counts
    assert c.get("flaps", 0) >= 2 and c.get("reloads", 0) >= 1, c
    assert c.get("upload_ok", 0) > 0 and c.get("l4_ok", 0) > 0, c
    assert c.get("tls_200", 0) > 0 and c.get("ws_ok", 0) > 0, c
    assert c.get("udp_ok", 0) > 10 * c.get("udp_lost", 0), c
    assert c.get("admin_200", 0) > 0, c

    # keep-alive wrk: served throughout, retries hiding most of the flapping
    m = re.search(r"(\d+) requests in", outs[0])
    assert m, outs[0]
    total = int(m.group(1))
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", outs[0]) or [0, 0])[1])
    assert total > 100, outs[0]
    assert non2xx < total * 0.2, outs[0]
    # close-mode wrk on a `respond` route: every answer is sluice's own 418
    m = re.search(r"(\d+) requests in", outs[1])
    assert m and int(m.group(1)) > 50, outs[1]
    assert f"Non-2xx or 3xx responses: {m.group(1)}" in outs[1], outs[1]
    for out in outs[2:]:         # h2load, in the clear and over TLS (ALPN h2)
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        assert m and int(m.group(2)) > 0, out

    # Every process a reload replaced stopped cleanly (a crash logs no stop).
    wait_for(lambda: len(s.log_lines("stopped")) >= c["reloads"], timeout=40,
             what=f"a clean stop of each of the {c['reloads']} replaced processes")

    # Quiet again: every backend back, served, and the serving process's
    # descriptors settle instead of growing with each burst.
    pid = s.serving_pid()
    wait_for(lambda: all(o.alive() for o in origins), what="origins back")

    def status_ok():
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        try:
            c.request("GET", "/api/v1/status")
            st = json.loads(c.getresponse().read())
            return all(b["state"] == "UP" for p in st["pools"] for b in p["backends"])
        except (OSError, ValueError, KeyError):
            return False
        finally:
            c.close()
    wait_for(status_ok, timeout=10, what="every backend UP")
    # client_idle (5 s) and upstream_idle (2 s) close what the load left open.
    time.sleep(6)
    before = fd_count(pid)
    subprocess.run([WRK, "-t1", "-c32", "-d2s", "-H", "Connection: close",
                    f"http://127.0.0.1:{web}/v1/"], capture_output=True, timeout=30)
    wait_for(lambda: fd_count(pid) <= before + 2, timeout=10,
             what=f"the descriptors of the burst closed ({before} before it)")
    conn = http.client.HTTPConnection("127.0.0.1", web, timeout=5)
    conn.request("GET", "/v1/")
    assert conn.getresponse().status == 200
    conn.close()
