"""Sticky sessions through the real binary, with curl's cookie jar as the
client: a session stays on its backend, survives a drain, moves when its
backend is disabled or dies, and two sluice instances agree on the cookie."""
import http.client
import http.server
import os
import re
import subprocess
import tempfile
import threading

from harness import free_port

CURL = "/usr/bin/curl"


def config(port, admin_port, backends, sticky="{cookie: SRV, ttl: 30m}", extra_pool=""):
    lines = ["workers: 2", "log: {level: info, access: off}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app", "pools:",
             "  - name: app", "    balance: round_robin", f"    sticky: {sticky}",
             "    timeouts: {connect: 1s}", extra_pool, "    backends:"]
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(l for l in lines if l) + "\n"


class Client:
    """curl with its own cookie jar: a browser-like client."""

    def __init__(self):
        fd, self.jar = tempfile.mkstemp(prefix="sluice-jar-")
        os.close(fd)

    def get(self, port, path="/"):
        r = subprocess.run([CURL, "-sS", "-i", "--max-time", "5", "-b", self.jar, "-c", self.jar,
                            f"http://127.0.0.1:{port}{path}"], capture_output=True, timeout=10)
        assert r.returncode == 0, r.stderr
        head, _, body = r.stdout.decode().partition("\r\n\r\n")
        status = int(head.split()[1])
        cookies = re.findall(r"(?im)^set-cookie: *(.*?)\r?$", head)
        return status, body.strip(), cookies

    def close(self):
        os.unlink(self.jar)


def admin(port, action, backend):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", f"/api/v1/pools/app/backends/{backend}/{action}")
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 200


def test_session_stays_drains_and_moves(procs):
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, [(o.origin_name, o.address) for o in os_]))
    c = Client()
    try:
        status, first, cookies = c.get(port)
        assert status == 200
        assert len(cookies) == 1
        assert re.fullmatch(r"SRV=[0-9a-f]{16}; Path=/; Max-Age=1800; HttpOnly", cookies[0]), cookies
        # The session stays, and the cookie is not set again.
        for _ in range(20):
            status, body, cookies = c.get(port)
            assert (status, body, cookies) == (200, first, [])
        # Without the cookie, round_robin spreads requests over all three:
        # the pinning above is the cookie's doing.
        fresh = set()
        for _ in range(6):
            other = Client()
            fresh.add(other.get(port)[1])
            other.close()
        assert fresh == {"b1", "b2", "b3"}
        # Draining: the session still reaches its backend; new clients do not.
        admin(aport, "drain", first)
        for _ in range(5):
            assert c.get(port)[:2] == (200, first)
        for _ in range(6):
            other = Client()
            assert other.get(port)[1] != first
            other.close()
        # Disabled: the session moves, with a new cookie, and stays there.
        admin(aport, "disable", first)
        status, second, cookies = c.get(port)
        assert status == 200 and second != first
        assert len(cookies) == 1 and cookies[0].startswith("SRV=")
        for _ in range(10):
            assert c.get(port) == (200, second, [])
        # Its backend dies: the connect fails, the retry lands elsewhere and
        # the response moves the session again.
        procs.all[[o.origin_name for o in os_].index(second)].stop()
        status, third, cookies = c.get(port)
        assert status == 200 and third not in (first, second)
        assert len(cookies) == 1
        for _ in range(5):
            assert c.get(port) == (200, third, [])
    finally:
        c.close()


def test_two_instances_share_sessions_and_bad_cookies_rebalance(procs):
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    backends = [(o.origin_name, o.address) for o in os_]
    ports = []
    for _ in range(2):
        port, aport = free_port(), free_port()
        procs.sluice(config(port, aport, backends, sticky="{cookie: SRV}"))
        ports.append(port)
    c = Client()
    try:
        status, first, cookies = c.get(ports[0])
        assert re.fullmatch(r"SRV=[0-9a-f]{16}; Path=/; HttpOnly", cookies[0]), cookies
        # Active-active: the other instance follows the same cookie.
        for _ in range(10):
            assert c.get(ports[1]) == (200, first, [])
    finally:
        c.close()
    # Values that name no backend count as no cookie: balanced, 200, and a
    # fresh cookie that names the backend that answered.
    names = {}
    for bad in ["SRV=zzzz", "SRV=0123456789abcdef", "SRV=0123456789ABCDEF", "SRV=", "SRV"]:
        c = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=5)
        c.request("GET", "/", headers={"Cookie": f"a=1; {bad}; b=2"})
        r = c.getresponse()
        body = r.read().decode().strip()
        assert r.status == 200, bad
        cookie = r.getheader("Set-Cookie")
        assert cookie and cookie.startswith("SRV="), (bad, cookie)
        names.setdefault(body, set()).add(cookie.split(";")[0])
        c.close()
    # Each backend has one value.
    assert all(len(v) == 1 for v in names.values())


class SetsCookies(http.server.BaseHTTPRequestHandler):
    """An origin that sets its own cookies, one of them with sluice's name."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Set-Cookie", "SRV=from-backend; Path=/")
        self.send_header("Set-Cookie", "SRVX=kept")
        self.send_header("Set-Cookie", "session=abc; HttpOnly")
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


def test_backend_cookie_of_the_same_name_is_dropped(procs):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SetsCookies)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port, aport = free_port(), free_port()
        procs.sluice(config(port, aport, [("py", f"127.0.0.1:{srv.server_address[1]}")],
                            sticky="{cookie: SRV, path: /app, secure: true, http_only: false}"))
        c = Client()
        try:
            status, body, cookies = c.get(port)
            assert status == 200 and body == "ok"
            assert "SRVX=kept" in cookies and "session=abc; HttpOnly" in cookies
            ours = [x for x in cookies if x.startswith("SRV=")]
            assert len(ours) == 1
            assert re.fullmatch(r"SRV=[0-9a-f]{16}; Path=/app; Secure", ours[0]), ours
            # A pinned session: the backend's SRV cookie is still dropped,
            # and sluice sets none.
            status, body, cookies = c.get(port, "/app/x")
            assert status == 200
            assert not [x for x in cookies if x.startswith("SRV=")], cookies
            assert "SRVX=kept" in cookies
        finally:
            c.close()
    finally:
        srv.shutdown()
        srv.server_close()


def split_config(port, admin_port, stable, canary, weights):
    lines = ["workers: 2", "log: {level: info, access: off}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    routes:",
             "      - match: {path_prefix: /}",
             f"        split: [{{pool: stable, weight: {weights[0]}}}, "
             f"{{pool: canary, weight: {weights[1]}}}]",
             "pools:"]
    for name, origins in (("stable", stable), ("canary", canary)):
        lines += [f"  - name: {name}", "    sticky: {cookie: SRV}", "    backends:"]
        lines += [f"      - {{name: {o.origin_name}, address: {o.address}}}" for o in origins]
    return "\n".join(lines) + "\n"


def test_canary_split_keeps_sessions_in_their_pool(procs):
    stable = [procs.origin("s1"), procs.origin("s2")]
    canary = [procs.origin("c1")]
    port, aport = free_port(), free_port()
    procs.sluice(split_config(port, aport, stable, canary, (50, 50)))
    # Without the cookie the split spreads clients over both pools...
    seen = {}
    for _ in range(40):
        c = Client()
        status, body, cookies = c.get(port)
        assert status == 200 and len(cookies) == 1
        seen.setdefault(body, c)
    assert "c1" in seen and ({"s1", "s2"} & set(seen))
    # ...and each client's later requests stay on its backend, in its pool,
    # though every request is split again.
    for body, c in seen.items():
        for _ in range(15):
            assert c.get(port) == (200, body, [])
    # The canary turned off (weight 0, as a rollback does): its sessions move
    # to the stable pool with a new cookie; stable sessions stay put. The
    # same cookies work on this second instance (the values are the same).
    port2, aport2 = free_port(), free_port()
    procs.sluice(split_config(port2, aport2, stable, canary, (100, 0)))
    status, body, cookies = seen["c1"].get(port2)
    assert status == 200 and body in ("s1", "s2") and len(cookies) == 1
    for _ in range(5):
        assert seen["c1"].get(port2) == (200, body, [])
    for name in {"s1", "s2"} & set(seen):
        assert seen[name].get(port2) == (200, name, [])
    for c in seen.values():
        c.close()
