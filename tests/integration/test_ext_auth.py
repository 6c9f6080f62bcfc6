"""External authentication (`auth: {type: external}`) through the real
binary: before a request goes to its pool, sluice asks an auth service this
file starts (a small http.server that decides by the Authorization header
and records every check it gets), and a recording app shows what reached
the backend. Covered: the check's fields, a 2xx's upstream_headers
replacing a client's forged ones, denials relayed (401, 302 with cookies,
403, bodies, a chunked body, one too large), a denied POST that never
reaches the app, keep-alive on both sides, failure: deny and allow for a
pool that is down, a 5xx and a slow service, `auth: off` and per-route
checks, HTTP/2 clients and WebSocket upgrades, clients that leave while
their check runs, and config errors with their positions."""
import http.client
import http.server
import json
import re
import socket
import socketserver
import subprocess
import threading
import time
import urllib.request

from harness import SLUICE, WebSocketEcho, free_port, read_request_body, wait_for

CURL = "/usr/bin/curl"


class Service:
    """An HTTP/1.1 keep-alive server on a free loopback port. handler(req)
    gets {method, path, headers (lowercased names, in order), body, port}
    and returns (status, [(name, value)], body bytes[, chunked]); every
    request is recorded."""

    def __init__(self, handler):
        self.requests = []
        self.lock = threading.Lock()
        svc = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                body = read_request_body(self)
                req = {"method": self.command, "path": self.path,
                       "headers": [(k.lower(), v) for k, v in self.headers.items()],
                       "body": body, "port": self.client_address[1]}
                with svc.lock:
                    svc.requests.append(req)
                out = handler(req)
                status, fields, payload = out[:3]
                chunked = len(out) > 3 and out[3]
                self.send_response(status)
                for k, v in fields:
                    self.send_header(k, v)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(payload), 7):
                        part = payload[i:i + 7]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def taken(self):
        with self.lock:
            out, self.requests = self.requests, []
        return out

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


BIG = b"x" * (100 * 1024)


def decide(req):
    """The auth service: the client's Authorization header says what to do."""
    h = dict(req["headers"])
    auth = h.get("authorization", "")
    cookie = h.get("cookie", "")
    if auth == "Bearer good" or "session=good" in cookie:
        return 200, [("X-User", "ann"), ("X-Email", "ann@example.com"), ("X-Other", "no")], b"ok\n"
    if auth == "Bearer chunked-ok":
        return 200, [("X-User", "cat")], b"a body to read and drop", True
    if auth == "Bearer redirect":
        return 302, [("Location", "https://login.example/?rd=/x"),
                     ("Set-Cookie", "csrf=1; Path=/"), ("Set-Cookie", "flow=2; Path=/"),
                     ("Content-Type", "text/plain")], b"see the login page\n"
    if auth == "Bearer forbid":
        return 403, [("Content-Type", "text/plain")], b"not for you\n"
    if auth == "Bearer chunked":
        return 401, [("WWW-Authenticate", 'Bearer realm="chunks"')], b"a chunked denial\n", True
    if auth == "Bearer big":
        return 401, [("Content-Type", "text/plain")], BIG
    if auth == "Bearer slow":
        time.sleep(1.5)
        return 200, [("X-User", "slow")], b""
    if auth == "Bearer broken":
        return 500, [("Content-Type", "text/plain")], b"internal details\n"
    return 401, [("WWW-Authenticate", 'Bearer realm="test"'), ("X-Secret", "internal"),
                 ("Content-Type", "text/plain")], b"who are you?\n"


def app_answer(req):
    return 200, [("Content-Type", "application/json")], json.dumps(
        {"method": req["method"], "path": req["path"], "headers": req["headers"],
         "body": req["body"].decode(errors="replace")}).encode()


AUTH = ("{type: external, pool: authz, path: \"/check?from=sluice\", "
        "request_headers: [authorization, cookie, x-test], upstream_headers: [x-user, x-email]"
        "EXTRA}")


def config(port, authz, app, listener_auth=True, extra="", routes="", http2=False,
           authz_pool_extra="", admin=None):
    if "timeout:" not in extra:
        extra += ", timeout: 500ms"
    auth = AUTH.replace("EXTRA", extra)
    return f"""workers: 1
log: {{level: info, access: off}}
{f"admin: {{listen: 127.0.0.1:{admin}}}" if admin else ""}
listeners:
  - name: web
    bind: 127.0.0.1:{port}
    mode: http
    pool: app
    http2: {"true" if http2 else "false"}
{"    auth: " + auth if listener_auth else ""}
    routes:
      - {{match: {{path: /open}}, pool: app, auth: off}}
{routes}      - {{match: {{path_prefix: /}}, pool: app}}
pools:
  - name: app
    timeouts: {{connect: 1s, upstream_response: 5s}}
    backends: [{{name: a1, address: {app}}}]
  - name: authz
    timeouts: {{connect: 1s, upstream_response: 5s}}
{authz_pool_extra}    backends: [{{name: z1, address: {authz}}}]
"""


def ext_auth_counts(admin):
    """sluice_ext_auth_{denied,errors}_total of listener web."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    got = {}
    for kind in ("denied", "errors"):
        m = re.search(r'^sluice_ext_auth_%s_total\{listener="web"\} (\d+)$' % kind, text, re.M)
        got[kind] = int(m.group(1)) if m else None
    return got


def app_got(body):
    """What the app answered it got: method, path, headers (as pairs), body."""
    got = json.loads(body)
    got["headers"] = [tuple(f) for f in got["headers"]]
    return got


def fields(resp):
    return [(k.lower(), v) for k, v in resp.getheaders()]


def send(conn, method, path, headers=None, body=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r, r.read()


def test_allowed_request_carries_the_services_fields_and_the_check_what_it_needs(procs):
    authz, app = Service(decide), Service(app_answer)
    port = free_port()
    try:
        procs.sluice(config(port, authz.address, app.address), wait_ports=[port])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        r, body = send(c, "GET", "/app/page?q=1&r=2",
                       {"Authorization": "Bearer good", "Cookie": "a=b", "X-Test": "t1",
                        "X-User": "forged", "X_User": "forged2", "X-Unlisted": "u"})
        assert r.status == 200, body
        got = app_got(body)
        h = got["headers"]
        # The service's X-User and X-Email replace the client's (both
        # spellings); its other fields do not reach the backend.
        assert [v for k, v in h if k in ("x-user", "x_user")] == ["ann"]
        assert ("x-email", "ann@example.com") in h and "x-other" not in dict(h)
        assert ("authorization", "Bearer good") in h and ("x-unlisted", "u") in h
        assert got["path"] == "/app/page?q=1&r=2"
        (chk,) = authz.taken()
        ch = dict(chk["headers"])
        assert chk["method"] == "GET" and chk["path"] == "/check?from=sluice"
        assert chk["body"] == b"" and "content-length" not in ch
        assert ch["authorization"] == "Bearer good" and ch["cookie"] == "a=b"
        assert ch["x-test"] == "t1"
        assert "x-unlisted" not in ch and "x-user" not in ch
        assert ch["host"] == f"127.0.0.1:{port}"
        assert ch["x-original-method"] == "GET" and ch["x-forwarded-method"] == "GET"
        assert ch["x-original-uri"] == "/app/page?q=1&r=2" == ch["x-forwarded-uri"]
        assert ch["x-original-url"] == f"http://127.0.0.1:{port}/app/page?q=1&r=2"
        assert ch["x-forwarded-for"] == "127.0.0.1" and ch["x-forwarded-proto"] == "http"
        assert ch["x-forwarded-host"] == f"127.0.0.1:{port}"
        assert len(ch["x-request-id"]) == 32

        # A POST: the check has no body and says POST; the app gets it all,
        # on the same client connection.
        r, body = send(c, "POST", "/form", {"Authorization": "Bearer good"}, b"name=ann&x=1")
        assert r.status == 200
        got = app_got(body)
        assert got["method"] == "POST" and got["body"] == "name=ann&x=1"
        (chk,) = authz.taken()
        assert chk["method"] == "GET" and chk["body"] == b""
        assert dict(chk["headers"])["x-original-method"] == "POST"

        # A 2xx with a chunked body: read to its end and dropped.
        for _ in range(3):
            r, body = send(c, "GET", "/c", {"Authorization": "Bearer chunked-ok"})
            assert r.status == 200 and ["cat"] == [v for k, v in app_got(body)["headers"]
                                                   if k == "x-user"]
        # The checks went over one keep-alive connection to the service.
        checks = authz.taken()
        assert len(checks) == 3 and len({q["port"] for q in checks}) == 1
        c.close()
    finally:
        authz.stop()
        app.stop()


def test_denials_are_relayed_and_the_request_goes_nowhere(procs):
    authz, app = Service(decide), Service(app_answer)
    port, admin = free_port(), free_port()
    routes = ("      - match: {path_prefix: /strict/}\n        pool: app\n"
              "        auth: " + AUTH.replace("EXTRA", ", client_headers: [www-authenticate]")
              + "\n")
    try:
        s = procs.sluice(config(port, authz.address, app.address, routes=routes, admin=admin),
                         wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        # No credentials: the service's 401, its challenge, fields and body.
        r, body = send(c, "GET", "/x")
        assert r.status == 401 and body == b"who are you?\n"
        assert r.getheader("WWW-Authenticate") == 'Bearer realm="test"'
        assert r.getheader("X-Secret") == "internal"       # client_headers: all by default
        assert r.getheader("Content-Length") == str(len(body))
        assert len(r.getheader("X-Request-Id")) == 32
        # 302 to the login page with both cookies, on the same connection.
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer redirect"})
        assert r.status == 302 and body == b"see the login page\n"
        assert r.getheader("Location") == "https://login.example/?rd=/x"
        assert [v for k, v in fields(r) if k == "set-cookie"] == ["csrf=1; Path=/",
                                                                  "flow=2; Path=/"]
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer forbid"})
        assert (r.status, body) == (403, b"not for you\n")
        # A chunked denial is relayed with a Content-Length.
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer chunked"})
        assert (r.status, body) == (401, b"a chunked denial\n")
        assert r.getheader("Content-Length") == str(len(body))
        # A HEAD: the head only.
        r, body = send(c, "HEAD", "/x", {"Authorization": "Bearer forbid"})
        assert r.status == 403 and body == b""
        # A body over 64 KiB is not relayed: the status and fields are.
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer big"})
        assert r.status == 401 and body == b"" and r.getheader("Content-Length") == "0"
        # client_headers on a route: only WWW-Authenticate of the service's.
        r, body = send(c, "GET", "/strict/x")
        assert r.status == 401 and body == b"who are you?\n"
        assert r.getheader("WWW-Authenticate") == 'Bearer realm="test"'
        assert r.getheader("X-Secret") is None and r.getheader("Content-Type") is None
        # Still the one connection, and the app never saw any of it.
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer good"})
        assert r.status == 200
        assert [q["path"] for q in app.taken()] == ["/x"]
        assert len(s.log_lines("auth_denied")) == 7
        assert ext_auth_counts(admin) == {"denied": 7, "errors": 0}
        assert "status=302" in s.log_lines("auth_denied")[1]
        assert s.log_lines("auth_denial_body_dropped")
        c.close()
    finally:
        authz.stop()
        app.stop()


def test_denied_post_never_reaches_the_app(procs):
    authz, app = Service(decide), Service(app_answer)
    port = free_port()
    try:
        procs.sluice(config(port, authz.address, app.address), wait_ports=[port])
        # A whole Content-Length body: dropped, and the connection serves on.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
            sk.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
                       b"Authorization: Bearer forbid\r\n\r\nhello world")
            f = sk.makefile("rb")
            assert f.readline().startswith(b"HTTP/1.1 403")
            head = {}
            while (line := f.readline()) != b"\r\n":
                k, _, v = line.decode().partition(":")
                head[k.strip().lower()] = v.strip()
            assert f.read(int(head["content-length"])) == b"not for you\n"
            assert "connection" not in head
            sk.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\n\r\n")
            assert f.readline().startswith(b"HTTP/1.1 200")
        # A chunked body that is not read: answered, then closed.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
            sk.sendall(b"POST /upload2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                       b"\r\n5\r\nhello\r\n")
            data = b""
            while True:
                chunk = sk.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 401") and b"\r\nConnection: close\r\n" in data
        wait_for(lambda: len(app.requests) >= 1, what="the allowed request")
        time.sleep(0.3)
        assert [q["path"] for q in app.taken()] == ["/after"]
        assert [dict(q["headers"])["x-original-uri"] for q in authz.taken()] == [
            "/upload", "/after", "/upload2"]
    finally:
        authz.stop()
        app.stop()


def test_failure_modes(procs):
    authz, app = Service(decide), Service(app_answer)
    down = f"127.0.0.1:{free_port()}"       # nothing listens there
    p_deny, p_allow, p_up_deny, p_up_allow = free_port(), free_port(), free_port(), free_port()
    admin = free_port()
    try:
        s1 = procs.sluice(config(p_deny, down, app.address), wait_ports=[p_deny])
        s2 = procs.sluice(config(p_allow, down, app.address, extra=", failure: allow"),
                          wait_ports=[p_allow])
        s3 = procs.sluice(config(p_up_deny, authz.address, app.address, admin=admin),
                          wait_ports=[p_up_deny, admin])
        s4 = procs.sluice(config(p_up_allow, authz.address, app.address, extra=", failure: allow"),
                          wait_ports=[p_up_allow])
        hdr = {"Authorization": "Bearer good", "X-User": "forged"}
        # The pool is down: deny answers 503; allow lets it through, without
        # the client's X-User.
        c = http.client.HTTPConnection("127.0.0.1", p_deny, timeout=10)
        r, body = send(c, "GET", "/x", hdr)
        assert (r.status, body) == (503, b"authentication service unavailable\n")
        r, body = send(c, "GET", "/x", hdr)        # keep-alive after a 503 of ours
        assert r.status == 503
        line = s1.log_lines("auth_error")[0]
        assert "pool=authz" in line and "failure=deny" in line and "why=" in line
        c = http.client.HTTPConnection("127.0.0.1", p_allow, timeout=10)
        r, body = send(c, "GET", "/x", hdr)
        assert r.status == 200
        assert "x-user" not in dict(app_got(body)["headers"])
        assert "failure=allow" in s2.log_lines("auth_error")[0]
        # A 5xx of the service is its failure, not a denial: its page stays
        # with it.
        c = http.client.HTTPConnection("127.0.0.1", p_up_deny, timeout=10)
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer broken"})
        assert (r.status, body) == (503, b"authentication service unavailable\n")
        assert 'why="answered 5xx"' in s3.log_lines("auth_error")[0]
        # Slower than timeout (500ms): deny → 503, allow → through.
        t0 = time.monotonic()
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer slow"})
        assert r.status == 503 and time.monotonic() - t0 < 1.4
        assert 'why="timeout"' in s3.log_lines("auth_error")[-1]
        assert ext_auth_counts(admin) == {"denied": 0, "errors": 2}
        c = http.client.HTTPConnection("127.0.0.1", p_up_allow, timeout=10)
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer slow", "X-User": "forged"})
        assert r.status == 200 and "x-user" not in dict(app_got(body)["headers"])
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer broken"})
        assert r.status == 200
        r, body = send(c, "GET", "/x", {"Authorization": "Bearer forbid"})
        assert r.status == 403              # failure: allow lets no denial through
        for s in (s1, s2, s3, s4):
            assert s.alive()
    finally:
        authz.stop()
        app.stop()


def test_auth_off_and_per_route_checks(procs):
    authz, app = Service(decide), Service(app_answer)
    port = free_port()
    routes = ("      - match: {path_prefix: /private/}\n        pool: app\n"
              "        auth: " + AUTH.replace("EXTRA", "") + "\n")
    try:
        procs.sluice(config(port, authz.address, app.address, listener_auth=False,
                            routes=routes), wait_ports=[port])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert send(c, "GET", "/public")[0].status == 200      # no auth on the listener
        assert send(c, "GET", "/open")[0].status == 200        # auth: off
        assert authz.taken() == []
        assert send(c, "GET", "/private/x")[0].status == 401
        r, body = send(c, "GET", "/private/x", {"Authorization": "Bearer good"})
        assert r.status == 200 and ("x-user", "ann") in app_got(body)["headers"]
        assert [dict(q["headers"])["x-original-uri"] for q in authz.taken()] == [
            "/private/x", "/private/x"]
    finally:
        authz.stop()
        app.stop()


def test_listener_auth_with_route_off(procs):
    authz, app = Service(decide), Service(app_answer)
    port = free_port()
    try:
        procs.sluice(config(port, authz.address, app.address), wait_ports=[port])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert send(c, "GET", "/open")[0].status == 200
        assert send(c, "GET", "/other")[0].status == 401
        assert [dict(q["headers"])["x-original-uri"] for q in authz.taken()] == ["/other"]
    finally:
        authz.stop()
        app.stop()


def test_http2_clients(procs):
    authz, app = Service(decide), Service(app_answer)
    port = free_port()
    try:
        procs.sluice(config(port, authz.address, app.address, http2=True), wait_ports=[port])

        def curl(*args):
            r = subprocess.run([CURL, "-sS", "-i", "--http2-prior-knowledge", *args],
                               capture_output=True, timeout=10)
            assert r.returncode == 0, r.stderr
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            return head.decode(), body

        head, body = curl("-H", "Authorization: Bearer good", "-H", "X-User: forged",
                          f"http://127.0.0.1:{port}/h2?x=1")
        assert head.startswith("HTTP/2 200")
        assert [v for k, v in app_got(body)["headers"] if k == "x-user"] == ["ann"]
        head, body = curl(f"http://127.0.0.1:{port}/h2")
        assert head.startswith("HTTP/2 401") and body == b"who are you?\n"
        assert 'www-authenticate: Bearer realm="test"' in head.lower().replace(
            'bearer realm', 'Bearer realm')
        head, body = curl("-H", "Authorization: Bearer redirect", "-d", "a=1",
                          f"http://127.0.0.1:{port}/h2post")
        assert head.startswith("HTTP/2 302") and "location: https://login.example/" in head
        head, body = curl("-H", "Authorization: Bearer good", "-d", "a=1",
                          f"http://127.0.0.1:{port}/h2post")
        assert head.startswith("HTTP/2 200") and app_got(body)["body"] == "a=1"
        # A gRPC call gets gRPC's answer, not the service's page:
        # UNAUTHENTICATED (16) for a 401 and for a redirect to a login page,
        # PERMISSION_DENIED (7) for a 403.
        for auth, code in (("none", "16"), ("Bearer redirect", "16"), ("Bearer forbid", "7")):
            head, body = curl("-H", "content-type: application/grpc", "-H", "te: trailers",
                              "-H", f"Authorization: {auth}", "--data-binary", "",
                              f"http://127.0.0.1:{port}/pkg.Svc/Call")
            assert head.startswith("HTTP/2 200") and f"grpc-status: {code}" in head, head
            assert "grpc-message: denied by the auth service" in head.replace("%20", " ")
        assert [q["path"] for q in app.taken()] == ["/h2?x=1", "/h2post"]
        checks = authz.taken()
        assert [dict(q["headers"])["x-original-method"] for q in checks] == [
            "GET", "GET", "POST", "POST", "POST", "POST", "POST"]
    finally:
        authz.stop()
        app.stop()


def test_websocket_upgrade_is_checked(procs):
    import websockets
    authz = Service(decide)
    echo = WebSocketEcho(websockets)
    port = free_port()
    try:
        procs.sluice(config(port, authz.address, f"127.0.0.1:{echo.port}"), wait_ports=[port])
        upgrade = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
            sk.sendall(upgrade + b"Authorization: Bearer good\r\n\r\n")
            head = sk.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            # One masked text frame "hi", echoed back unmasked.
            sk.sendall(bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]))
            assert wait_for(lambda: sk.recv(16), what="the echo") == bytes([0x81, 2]) + b"hi"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
            sk.sendall(upgrade + b"\r\n")
            assert sk.recv(4096).startswith(b"HTTP/1.1 401")
        checks = authz.taken()
        assert [dict(q["headers"])["x-original-uri"] for q in checks] == ["/ws", "/ws"]
        assert all("upgrade" not in dict(q["headers"]) for q in checks)
    finally:
        echo.stop()
        authz.stop()


def test_clients_that_leave_during_the_check(procs):
    import h2.config
    import h2.connection
    import h2.events
    authz, app = Service(decide), Service(app_answer)
    port = free_port()
    # A long timeout: the slow check (1.5 s) is still running when they go.
    auth_extra = ", timeout: 3s"
    try:
        s = procs.sluice(config(port, authz.address, app.address, extra=auth_extra, http2=True),
                         wait_ports=[port])
        slow = b"Authorization: Bearer slow\r\n"
        # HTTP/1.1, closed (FIN) and reset (RST) while the check runs.
        fin = socket.create_connection(("127.0.0.1", port), timeout=10)
        fin.sendall(b"GET /fin HTTP/1.1\r\nHost: t\r\n" + slow + b"\r\n")
        rst = socket.create_connection(("127.0.0.1", port), timeout=10)
        rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        rst.sendall(b"GET /rst HTTP/1.1\r\nHost: t\r\n" + slow + b"\r\n")
        wait_for(lambda: len(authz.requests) >= 2, what="both checks")
        fin.close()
        rst.close()

        # HTTP/2: one stream reset, one connection dropped, mid-check.
        def h2_conn():
            sk = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sk.sendall(conn.data_to_send())
            return sk, conn

        def h2_headers(path, auth):
            return [(":method", "GET"), (":path", path), (":scheme", "http"),
                    (":authority", "t"), ("authorization", auth)]

        sk1, c1 = h2_conn()
        c1.send_headers(1, h2_headers("/h2reset", "Bearer slow"), end_stream=True)
        sk1.sendall(c1.data_to_send())
        sk2, c2 = h2_conn()
        c2.send_headers(1, h2_headers("/h2drop", "Bearer slow"), end_stream=True)
        sk2.sendall(c2.data_to_send())
        wait_for(lambda: len(authz.requests) >= 4, what="the HTTP/2 checks")
        c1.reset_stream(1)
        sk1.sendall(c1.data_to_send())
        sk2.close()
        # The first connection serves its next stream.
        c1.send_headers(3, h2_headers("/h2next", "Bearer good"), end_stream=True)
        sk1.sendall(c1.data_to_send())
        status, done = None, False
        while not done:
            data = sk1.recv(65536)
            assert data, "sluice closed the HTTP/2 connection"
            for ev in c1.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 3:
                    status = dict(ev.headers)[b":status"]
                if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 3:
                    done = True
            sk1.sendall(c1.data_to_send())
        assert status == b"200"
        sk1.close()
        # The slow answers come back to checks nobody waits for any more.
        time.sleep(2.0)
        assert s.alive()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert send(c, "GET", "/later", {"Authorization": "Bearer good"})[0].status == 200
        paths = [q["path"] for q in app.taken()]
        # Cancelled checks send nothing on; the FIN client's request may go.
        assert "/rst" not in paths and "/h2reset" not in paths and "/h2drop" not in paths
        assert "/h2next" in paths and "/later" in paths
    finally:
        authz.stop()
        app.stop()


def check(tmp_path, text):
    path = tmp_path / "sluice.yaml"
    path.write_text(text)
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=30)
    return r.returncode, r.stdout + r.stderr, str(path)


def test_config_errors(tmp_path):
    def cfg(auth):
        return f"""listeners:
  - name: web
    bind: 127.0.0.1:1
    mode: http
    pool: app
    auth: {auth}
pools:
  - name: app
    backends: [{{address: 127.0.0.1:2}}]
  - name: authz
    backends: [{{address: 127.0.0.1:3}}]
"""
    ok, out, _ = check(tmp_path, cfg("{type: external, pool: authz, path: /oauth2/auth, "
                                     "upstream_headers: [X-Auth-Request-User]}"))
    assert ok == 0, out
    # (auth block, the text the error points at, the message)
    cases = [
        ("{type: external, pool: nope}", "nope", "auth.pool: pool 'nope' is not defined"),
        ("{type: external}", "{", "missing required key 'auth.pool'"),
        ("{type: external, pool: authz, timeout: soon}", "soon", "auth.timeout"),
        ("{type: external, pool: authz, timeout: 2m}", "2m", "auth.timeout: at most 1m"),
        ("{type: external, pool: authz, path: oauth}", "oauth", "auth.path: a path starting"),
        ("{type: external, pool: authz, failure: open}", "open", "auth.failure"),
        ("{type: external, pool: authz, request_headers: [\"bad name\"]}", "\"bad",
         "'bad name' is not a header field name"),
        ("{type: external, pool: authz, upstream_headers: [x-user, Content-Length]}",
         "Content-Length", "'Content-Length' is a hop-by-hop or framing field"),
        ("{type: external, pool: authz, upstream_headers: [x-forwarded-for]}",
         "x-forwarded-for", "'x-forwarded-for' is written for the backend by sluice itself"),
        ("{type: external, pool: authz, request_headers: [host]}", "host",
         "'host' is written on the check by sluice itself"),
        ("{type: external, pool: authz, upstream_headers: [x-a, X-A]}", "X-A",
         "'X-A' is listed twice"),
        ("{type: external, pool: authz, users_file: /x}", "users_file",
         "auth.users_file does not apply to type external"),
        ("{type: externa, pool: authz}", "externa", "is not one of: basic, jwt, external"),
    ]
    for auth, at, text in cases:
        rc, out, path = check(tmp_path, cfg(auth))
        assert rc == 1, (auth, out)
        # Line 6 is the auth block's, which starts at column 11.
        assert f"{path}:6:{11 + auth.index(at)}: error:" in out and text in out, (auth, out)
