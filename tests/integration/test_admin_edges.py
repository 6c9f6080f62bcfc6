"""Edges of the admin server, its metrics and hot reload: HEAD and
keep-alive framing, the JSON it writes for names clients made up, counters
that must not go backwards across a reload."""
import http.client
import json
import re
import socket
import threading
import time

from harness import AcceptLoop, free_port, http_get, pid_running, wait_for


def admin_config(port, admin_port, backends, workers=1, health=None, drain_timeout="5s"):
    lines = [f"workers: {workers}", f"drain_timeout: {drain_timeout}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}",
             "log: {level: info, access: \"off\"}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app", "pools:", "  - name: app", "    balance: round_robin",
             "    timeouts: {connect: 1s, upstream_response: 10s}"]
    if health:
        lines.append(f"    health_check: {health}")
    lines.append("    backends:")
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def start(procs, backends, **kw):
    port, admin_port = free_port(), free_port()
    s = procs.sluice(admin_config(port, admin_port, backends, **kw),
                     wait_ports=(port, admin_port))
    return s, port, admin_port


def api(admin_port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def scrape_sent(admin_port, backend="b1"):
    """sluice_backend_sent_total of one backend of pool app."""
    code, _, data = api(admin_port, "GET", "/metrics")
    assert code == 200
    m = re.search(rf'^sluice_backend_sent_total{{pool="app",backend="{backend}"}} (\d+)$',
                  data.decode(), re.M)
    return int(m.group(1))


def raw(admin_port, data, timeout=10):
    """Send bytes on one connection; everything read until sluice closes."""
    with socket.create_connection(("127.0.0.1", admin_port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# ---- HTTP framing ----

def test_head_has_no_body_and_keepalive_stays_in_step(procs):
    """A HEAD answer carries Content-Length but no body (RFC 9110 9.3.2):
    the body's bytes would be read as the start of the next answer on the
    same connection."""
    b1 = procs.origin("b1")
    _, _, admin_port = start(procs, [("b1", b1.address)])
    for path in ("/healthz", "/metrics", "/api/v1/status", "/"):
        out = raw(admin_port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /api/v1/status HTTP/1.1\r\nHost: x\r\n"
                              "Connection: close\r\n\r\n".encode())
        first, sep, rest = out.partition(b"\r\n\r\n")
        assert sep and first.startswith(b"HTTP/1.1 200 "), out[:300]
        assert int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0
        # Right after the head: the next answer, not the HEAD's body.
        assert rest.startswith(b"HTTP/1.1 200 "), (path, rest[:200])
        head, _, body = rest.partition(b"\r\n\r\n")
        assert json.loads(body)["pools"][0]["name"] == "app"


# ---- the JSON it writes ----

def test_error_json_is_utf8_for_any_escaped_name(procs):
    """A %-escaped name that decodes to bytes that are not UTF-8 comes back
    in the 404's message: the reply must still be JSON (RFC 8259 8.1:
    UTF-8), or a client cannot read why it failed."""
    b1 = procs.origin("b1")
    _, _, admin_port = start(procs, [("b1", b1.address)])
    for name in ("%FF", "a%C3", "%C3%28", "%ED%A0%80", "%F4%90%80%80", "%E2%82",
                 "%22%5C%0A%01", "%C3%A9t%C3%A9"):
        out = raw(admin_port, f"POST /api/v1/pools/{name}/backends/b1/drain HTTP/1.1\r\n"
                              "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404 "), out
        j = json.loads(body.decode("utf-8"))          # strict: raises on bad UTF-8
        assert j["error"].startswith("no pool named"), j
    # Valid UTF-8 and escapes come back as they were.
    out = raw(admin_port, b"POST /api/v1/pools/%C3%A9t%C3%A9%22/backends/b1/drain HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["error"] == "no pool named '\u00e9t\u00e9\"'"


# ---- counters across a reload ----

def status(admin_port):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        c.request("GET", "/api/v1/status")
        r = c.getresponse()
        assert r.status == 200
        return json.loads(r.read())
    finally:
        c.close()


def backend(st, pool, name):
    p = next(p for p in st["pools"] if p["name"] == pool)
    return next(b for b in p["backends"] if b["name"] == name)


def test_counters_do_not_go_backwards_across_reload(procs):
    """The new process starts from the old one's counters; the requests
    the old one serves while the new one starts (here: while its first
    health check of a backend that never answers runs out) must not be
    lost, or requests_total and sluice_backend_sent_total go backwards,
    which Prometheus reads as a counter reset (a rate() spike)."""
    b1 = procs.origin("b1")
    mute = AcceptLoop(lambda c: None)          # accepts, never answers a check
    try:
        s, port, admin_port = start(
            procs, [("b1", b1.address), ("mute", mute.address)],
            health="{type: http, path: /health, interval: 4s, timeout: 3s, "
                   "healthy_threshold: 1, unhealthy_threshold: 1}")
        for _ in range(5):
            assert http_get(port)[2] == b"b1\n"
        code, _, data = api(admin_port, "POST", "/api/v1/reload")
        assert code == 202, data
        new_pid = json.loads(data)["new_pid"]
        # The new process waits for its first checks: the old one serves.
        for _ in range(20):
            assert http_get(port)[2] == b"b1\n"
        st = status(admin_port)
        assert st["pid"] == s.pid, "handed over too early for this test"
        before = backend(st, "app", "b1")["requests_total"]
        assert before >= 25
        wait_for(lambda: status(admin_port)["pid"] == new_pid, timeout=30,
                 what="the new process to serve")
        after = backend(status(admin_port), "app", "b1")["requests_total"]
        assert after >= before, (before, after)
        fams = scrape_sent(admin_port)
        assert fams >= before, (before, fams)
    finally:
        mute.stop()


def test_change_on_kept_alive_connection_after_reload_is_not_lost(procs):
    """After a reload the old process drains, and an admin connection kept
    alive from before still reaches it. A drain sent there must not answer
    200 while the process that serves goes on sending the backend work:
    either the change holds where traffic goes, or the client is told."""
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    s, port, admin_port = start(procs, [("b1", b1.address), ("b2", b2.address)],
                                drain_timeout="20s")
    kept = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    kept.request("GET", "/api/v1/status")
    r = kept.getresponse()
    assert r.status == 200 and json.loads(r.read())["pid"] == s.pid
    # A slow request keeps the old process draining for a while.
    slow = {}

    def slow_request():
        slow["reply"] = http_get(port, "/delay/6000", timeout=30)
    t = threading.Thread(target=slow_request)
    t.start()
    try:
        wait_for(lambda: any(b["active_requests"] for p in status(admin_port)["pools"]
                             for b in p["backends"]), what="the slow request in flight")
        new_pid = s.reload()
        assert status(admin_port)["pid"] == new_pid     # new connections: the new process
        assert pid_running(s.pid)                       # the old one still drains
        kept.request("POST", "/api/v1/pools/app/backends/b1/drain")
        r = kept.getresponse()
        body = json.loads(r.read())
        serving = backend(status(admin_port), "app", "b1")["state"]
        assert (r.status == 200) == (serving == "DRAINING"), (r.status, body, serving)
        if r.status != 200:
            assert "error" in body and r.getheader("connection") == "close", body
    finally:
        kept.close()
        t.join(30)
    assert slow["reply"][0] == 200


# ---- slow clients ----

def test_trickled_request_head_is_cut_off(procs):
    """The admin listener takes 64 connections at most, monitoring
    included: one byte of a request head now and then must not hold a
    connection for ever (slowloris). A request has 15 s to arrive whole."""
    b1 = procs.origin("b1")
    _, _, admin_port = start(procs, [("b1", b1.address)])
    # A head sent in pieces, slowly but whole in time, is answered.
    with socket.create_connection(("127.0.0.1", admin_port), timeout=10) as s:
        for part in (b"GET /healthz HTT", b"P/1.1\r\nHost: x\r\n", b"Connection: close\r\n\r\n"):
            s.sendall(part)
            time.sleep(0.5)
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    s = socket.create_connection(("127.0.0.1", admin_port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start_t = time.monotonic()
        closed = False
        while time.monotonic() - start_t < 45:
            try:
                s.sendall(b"a")
            except OSError:
                closed = True
                break
            s.settimeout(1.0)
            try:
                if s.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
        assert closed, "a trickled head held the connection for 45 s"
        assert time.monotonic() - start_t > 5       # not cut at once
    finally:
        s.close()
    assert api(admin_port, "GET", "/healthz")[0] == 200


# ---- who may change things ----

def test_cross_site_browser_post_cannot_change_backends(procs):
    """Without a token (a loopback admin.listen needs none), any web page
    the operator opens can make the browser POST to 127.0.0.1:ADMIN: a
    form's POST needs no preflight. A browser says where such a request
    comes from in Origin; a change from another origin is refused."""
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    _, _, admin_port = start(procs, [("b1", b1.address), ("b2", b2.address)])
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{admin_port}.evil.example"):
        for path in ("/api/v1/pools/app/backends/b1/disable", "/api/v1/reload"):
            code, h, data = api(admin_port, "POST", path, body="x=1",
                                headers={"Origin": origin,
                                         "Content-Type": "application/x-www-form-urlencoded"})
            assert code == 403, (origin, path, code, data)
            assert "error" in json.loads(data)
    assert backend(status(admin_port), "app", "b1")["state"] == "UP"
    assert status(admin_port)["pid"] == procs.all[-1].pid        # no reload began
    # Reads stay open to pages (the dashboard), and the same origin may change.
    assert api(admin_port, "GET", "/api/v1/status", headers={"Origin": "http://evil.example"})[0] == 200
    code, _, data = api(admin_port, "POST", "/api/v1/pools/app/backends/b1/drain",
                        headers={"Origin": f"http://127.0.0.1:{admin_port}"})
    assert code == 200 and json.loads(data)["state"] == "DRAINING"


def test_dns_rebound_page_cannot_change_backends(procs):
    """DNS rebinding: a page at http://evil.example:ADMIN whose name then
    resolves to 127.0.0.1 is the admin's own origin to the browser, so the
    Origin check lets its POSTs through. Without a token, a change must
    name the admin by an address or localhost in Host, which such a page
    cannot send."""
    b1 = procs.origin("b1")
    _, _, admin_port = start(procs, [("b1", b1.address)])
    drain = "/api/v1/pools/app/backends/b1/drain"
    for host in (f"evil.example:{admin_port}", "evil.example", f"127.0.0.1.evil.example:{admin_port}"):
        code, _, data = api(admin_port, "POST", drain,
                            headers={"Host": host, "Origin": f"http://{host}"})
        assert code == 403, (host, code, data)
    assert backend(status(admin_port), "app", "b1")["state"] == "UP"
    # Reads stay open whatever the name; addresses and localhost may change.
    assert api(admin_port, "GET", "/api/v1/status", headers={"Host": "evil.example"})[0] == 200
    for host in (f"localhost:{admin_port}", f"127.0.0.1:{admin_port}", "[::1]", "LOCALHOST"):
        code, _, data = api(admin_port, "POST", "/api/v1/pools/app/backends/b1/enable",
                            headers={"Host": host})
        assert code == 200, (host, code, data)
