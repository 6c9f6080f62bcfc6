"""TLS termination on http listeners, with real clients (curl, Python's ssl,
python3-websockets) and certificates made by the openssl command for each
test run: SNI, keep-alive, large bodies both ways, X-Forwarded-Proto, WebSocket
over TLS, a stalled or plain-text handshake, TLS 1.3 only, and the config's
certificate errors."""
import asyncio
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from harness import ROOT, SLUICE, WebSocketEcho, free_port, recv_all, wait_for, websocket_echo_roundtrip

OPENSSL = "/usr/bin/openssl"
CURL = "/usr/bin/curl"


def run(*args):
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def config(port, backend, pki, extra_tls="", extra="", certs=("a", "b")):
    cl = ", ".join(f"{{cert: {pki[c][0]}, key: {pki[c][1]}}}" for c in certs)
    return "\n".join([
        "workers: 2", "log: {level: info, access: off}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app",
        f"    tls: {{certificates: [{cl}]{extra_tls}}}", extra,
        "pools:", "  - name: app", "    backends:", f"      - {{name: b1, address: {backend}}}",
    ]) + "\n"


def client_ctx(pki):
    return ssl.create_default_context(cafile=pki["ca"])


def https(port, pki, host="a.test", path="/", method="GET", body=None, ctx=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx or client_ctx(pki))
    c._tunnel_host = None
    # Connect to 127.0.0.1 but verify and send SNI for host.
    c.sock = (ctx or client_ctx(pki)).wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    c.request(method, path, body=body, headers={"Host": host})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_https_keepalive_forwarded_proto_and_curl(procs, pki):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki))
    r = subprocess.run([CURL, "-sS", "--cacert", pki["ca"], "--resolve", f"a.test:{port}:127.0.0.1",
                        f"https://a.test:{port}/", f"https://a.test:{port}/echo",
                        "-w", "\nSTATS %{http_code} %{num_connects} %{ssl_verify_result}\n"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    parts = re.split(r"\n?\nSTATS (.*)\n", r.stdout)
    assert parts[0] == "b1" and parts[1] == "200 1 0", r.stdout
    echo = json.loads(parts[2])
    h = {k.lower(): v for k, v in echo["headers"]}
    assert h["x-forwarded-proto"] == "https"
    assert parts[3] == "200 0 0", r.stdout    # the second request reused the connection
    # 30 requests on one TLS connection.
    ctx = client_ctx(pki)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                           server_hostname="a.test")
    assert sock.version() in ("TLSv1.2", "TLSv1.3")
    assert sock.selected_alpn_protocol() is None
    f = sock.makefile("rb")
    for _ in range(30):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        status = f.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        length = 0
        while True:
            line = f.readline()
            if line == b"\r\n":
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        assert f.read(length) == b"b1\n"
    sock.close()


def test_alpn_offers_http11(procs, pki):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki))
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                         server_hostname="a.test") as s:
        assert s.selected_alpn_protocol() == "http/1.1"


def test_sni_picks_the_certificate(procs, pki):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki))

    def names(host):
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.check_hostname = False
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname=host) as s:
            return [v for k, v in s.getpeercert()["subjectAltName"]]

    assert names("a.test") == ["a.test"]
    assert names("x.b.test") == ["*.b.test"]
    assert names("other.test") == ["a.test"]          # no match: the first, the default
    # And verification by name works end to end for both.
    assert https(port, pki, host="a.test") == (200, b"b1\n")
    assert https(port, pki, host="api.b.test") == (200, b"b1\n")


def test_large_bodies_both_ways(procs, pki):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki))
    body = os.urandom(8 * 1024 * 1024)
    status, data = https(port, pki, path="/echo", method="POST", body=body)
    assert status == 200
    echo = json.loads(data)
    assert echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    status, data = https(port, pki, path="/bytes/9000000")
    direct = http.client.HTTPConnection("127.0.0.1", o.port, timeout=10)
    direct.request("GET", "/bytes/9000000")
    assert (status, data) == (200, direct.getresponse().read())
    direct.close()


def wss_roundtrip(websockets, port, pki):
    """The harness's WebSocket round trip, over TLS to a.test on port."""
    asyncio.run(asyncio.wait_for(websocket_echo_roundtrip(
        websockets, f"wss://a.test:{port}/chat", ssl=client_ctx(pki), host="127.0.0.1",
        port=port, server_hostname="a.test"), 20))


def test_websocket_over_tls(procs, pki):
    websockets = pytest.importorskip("websockets")
    import websockets.server  # noqa: F401
    origin = WebSocketEcho(websockets)
    port = free_port()
    procs.sluice(config(port, f"127.0.0.1:{origin.port}", pki))

    try:
        wss_roundtrip(websockets, port, pki)
    finally:
        origin.stop()


def test_bad_handshakes_are_closed_and_counted(procs, pki):
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    s = procs.sluice(config(port, o.address, pki, extra_tls=", min_version: \"1.3\"",
                            extra=f"    timeouts: {{client_header: 1s}}\nadmin: {{listen: 127.0.0.1:{aport}}}"))
    # Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        try:
            data = c.recv(4096)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/")
    # A TLS 1.2-only client against min_version 1.3.
    ctx = client_ctx(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                        server_hostname="a.test")
    # A client that connects and never finishes its handshake is closed
    # after client_header.
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"\x16\x03\x01\x00")      # the start of a ClientHello, then nothing
        assert c.recv(4096) == b""
    assert 0.8 < time.monotonic() - t0 < 4
    wait_for(lambda: len(s.log_lines("tls_handshake_failed")) >= 2, what="handshake failures logged")
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    m = re.search(r'^sluice_tls_handshake_errors_total\{listener="web"\} (\d+)$', text, re.M)
    assert m and int(m.group(1)) >= 2, text
    # TLS 1.3 clients are still served.
    assert https(port, pki) == (200, b"b1\n")


def test_certificate_errors_in_check(pki, tmp_path):
    port = free_port()
    cases = [
        (config(port, "127.0.0.1:9", pki).replace(pki["a"][0], str(tmp_path / "missing.pem")),
         "cannot read"),
        (config(port, "127.0.0.1:9", pki).replace(pki["a"][1], pki["b"][1]), "does not belong"),
        (config(port, "127.0.0.1:9", pki).replace(pki["a"][0], pki["a"][1]),
         "cannot load certificate"),
        (config(port, "127.0.0.1:9", pki, extra_tls=", min_version: \"1.1\""), "min_version"),
    ]
    for text, words in cases:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, r.stdout + r.stderr
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: error: .*{words}", r.stdout + r.stderr), \
            r.stdout + r.stderr


def test_sessions_resume(procs, pki):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki))
    ctx = client_ctx(pki)

    def request(session=None):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                            server_hostname="a.test", session=session)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
        reused, sess = s.session_reused, s.session
        s.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"b1\n")
        return reused, sess

    reused, sess = request()
    assert not reused
    reused, _ = request(sess)
    assert reused


def tcp_tls_config(port, backend, pki, extra_listener=""):
    return "\n".join([
        "workers: 2", "log: {level: info, access: stdout}", "listeners:",
        f"  - {{name: l4, bind: 127.0.0.1:{port}, mode: tcp, pool: app,",
        f"     tls: {{certificates: [{{cert: {pki['a'][0]}, key: {pki['a'][1]}}}]}}{extra_listener}}}",
        "pools:", "  - name: app", "    backends:", f"      - {{name: e1, address: {backend}}}",
    ]) + "\n"


def test_tcp_listener_terminates_tls(procs, pki):
    """A tcp listener with tls: the backend gets the plaintext stream, both
    ways, with half-close passed on, 4 MB each way."""
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    s = procs.sluice(tcp_tls_config(port, echo.address, pki))
    payload = os.urandom(4 * 1024 * 1024)
    with client_ctx(pki).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                     server_hostname="a.test") as c:
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = c.recv(1 << 20)
            assert chunk, "closed early"
            got += chunk
        assert got == payload
    # Plain text to the TLS port is refused and counted in the log.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"hello\r\n")
        try:
            assert c.recv(100) == b""
        except ConnectionResetError:
            pass
    wait_for(lambda: s.log_lines("tls_handshake_failed"), what="the failed handshake logged")


def test_tcp_tls_after_a_proxy_header(procs, pki):
    """proxy_protocol: accept on a tls tcp listener: the PROXY header comes
    in clear before the handshake, and its client address is logged."""
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    s = procs.sluice(tcp_tls_config(port, echo.address, pki, ", proxy_protocol: accept"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n")
    with client_ctx(pki).wrap_socket(raw, server_hostname="a.test") as c:
        c.sendall(b"ping over tls\n")
        assert c.recv(100) == b"ping over tls\n"
    wait_for(lambda: "192.0.2.7" in s.stdout(), what="the PROXY client in the access log")


class TLSOrigin:
    """An HTTPS origin (Python's http.server over ssl) with a certificate of
    the test's CA; counts the TLS handshakes it completed and remembers the
    SNI names it was asked for."""

    def __init__(self, cert, key, name="tls1", client_ca=None):
        import http.server
        import threading
        origin = self
        self.handshakes, self.sni, self.requests = 0, [], 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                origin.requests += 1
                body = (name + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED

        def on_sni(sock, server_name, c):
            origin.sni.append(server_name)
            origin.handshakes += 1
        ctx.sni_callback = on_sni

        class Server(http.server.ThreadingHTTPServer):
            def get_request(self):
                s, addr = self.socket.accept()
                return ctx.wrap_socket(s, server_side=True), addr

        self.srv = Server(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def plain_status(port):
    """The status of a plain GET / to port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def pool_tls_config(port, origin_port, pool_tls):
    return "\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:",
        f"  - {{name: web, bind: 127.0.0.1:{port}, mode: http, pool: app}}",
        "pools:", "  - name: app", f"    tls: {pool_tls}", "    timeouts: {connect: 1s}",
        "    backends:", f"      - {{name: tls1, address: 127.0.0.1:{origin_port}}}",
    ]) + "\n"


def test_tls_to_backends(procs, pki):
    origin = TLSOrigin(*pki["a"])
    try:
        port = free_port()
        procs.sluice(pool_tls_config(port, origin.port,
                                     f"{{ca_file: {pki['ca']}, server_name: a.test}}"))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(20):
            c.request("GET", "/")
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"tls1\n")
        c.close()
        assert origin.sni[0] == "a.test"
        assert origin.handshakes == 1       # the upstream connection was reused
    finally:
        origin.stop()


def test_mirror_to_an_https_pool(procs, pki):
    # A route's mirror pool speaks TLS: copies go over verified, reused
    # TLS connections, and the client's answers still come from its pool.
    plain = procs.origin("b1")
    shadow = TLSOrigin(*pki["a"], name="shadow")
    try:
        port, admin = free_port(), free_port()

        def copies_done():
            text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read()
            m = re.search(rb'sluice_mirror_requests_total\{pool="shadow",result="ok"\} (\d+)', text)
            return int(m.group(1)) if m else 0
        cfg = "\n".join([
            "workers: 1", "log: {level: info, access: off}", f"admin: {{listen: 127.0.0.1:{admin}}}",
            "listeners:", f"  - name: web\n    bind: 127.0.0.1:{port}\n    mode: http",
            "    routes:\n      - match: {path_prefix: /}\n        pool: app\n"
            "        mirror: {pool: shadow}",
            "pools:", f"  - name: app\n    backends: [{{address: {plain.address}}}]",
            f"  - name: shadow\n    tls: {{ca_file: {pki['ca']}, server_name: a.test}}",
            f"    backends: [{{address: 127.0.0.1:{shadow.port}}}]"]) + "\n"
        procs.sluice(cfg, wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(20):
            c.request("GET", "/")
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"b1\n")
            # One copy at a time (a copy in flight takes a connection of
            # its own), so that the next can reuse its connection.
            wait_for(lambda: copies_done() == i + 1, what=f"copy {i + 1} over TLS")
        assert shadow.requests == 20
        c.close()
        assert shadow.sni[0] == "a.test"
        assert shadow.handshakes == 1, shadow.handshakes   # kept alive and reused
    finally:
        shadow.stop()


def test_tls_to_backends_checks_the_certificate(procs, pki):
    origin = TLSOrigin(*pki["a"])
    try:
        # The certificate is for a.test, not b.test: no backend is usable.
        port = free_port()
        s = procs.sluice(pool_tls_config(port, origin.port,
                                         f"{{ca_file: {pki['ca']}, server_name: x.b.test}}"))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 502, r.status
        r.read()
        wait_for(lambda: any("pool=app backend=tls1" in l for l in s.log_lines("tls_handshake_failed")),
                 what="the failed backend handshake logged")
        # Without a server name the certificate must name the address: it
        # does not; with verify: false it is taken as it is.
        port2, port3 = free_port(), free_port()
        procs.sluice(pool_tls_config(port2, origin.port, f"{{ca_file: {pki['ca']}}}"))
        procs.sluice(pool_tls_config(port3, origin.port, "{verify: false}"))
        for p, want in ((port2, 502), (port3, 200)):
            assert plain_status(p) == want, p
    finally:
        origin.stop()


def test_websocket_tls_on_both_sides(procs, pki):
    """A TLS client, a TLS listener, a pool with tls and a TLS WebSocket
    origin: the tunnel moves bytes between two TLS connections."""
    websockets = pytest.importorskip("websockets")
    import websockets.server  # noqa: F401
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*pki["a"])
    origin = WebSocketEcho(websockets, ssl=sctx)
    port = free_port()
    cfg = config(port, f"127.0.0.1:{origin.port}", pki).replace(
        "  - name: app\n", f"  - name: app\n    tls: {{ca_file: {pki['ca']}, server_name: a.test}}\n")
    procs.sluice(cfg)
    try:
        wss_roundtrip(websockets, port, pki)
    finally:
        origin.stop()


def test_http_health_checks_over_tls(procs, pki):
    """A pool with tls checks its backends over TLS too, against the same
    CAs and name: a good backend comes UP; one whose certificate does not
    match stays DOWN, and the check says why."""
    origin = TLSOrigin(*pki["a"])
    try:
        for name, want in (("a.test", "UP"), ("x.b.test", "DOWN")):
            port, aport = free_port(), free_port()
            cfg = pool_tls_config(port, origin.port,
                                  f"{{ca_file: {pki['ca']}, server_name: {name}}}").replace(
                "level: info", "level: debug").replace(
                "    timeouts: {connect: 1s}\n",
                "    timeouts: {connect: 1s}\n"
                "    health_check: {type: http, path: /, interval: 200ms, timeout: 150ms}\n")
            cfg += f"admin: {{listen: 127.0.0.1:{aport}}}\n"
            s = procs.sluice(cfg)

            def state():
                c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
                c.request("GET", "/api/v1/status")
                st = json.loads(c.getresponse().read())
                c.close()
                return st["pools"][0]["backends"][0]["state"]
            time.sleep(0.7)               # three checks
            assert state() == want, (name, s.stderr()[-2000:])
            if want == "UP":
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/")
                assert c.getresponse().read() == b"tls1\n"
            else:
                assert any("TLS handshake" in l for l in s.log_lines("health_check_failed"))
    finally:
        origin.stop()


def test_tcp_listener_to_a_tls_pool(procs, pki):
    """A tcp listener in front of a pool with tls: sluice originates TLS, the
    client speaks plain text; a backend certificate that does not match is
    a failed connect (closed, logged)."""
    origin = TLSOrigin(*pki["a"])
    try:
        for name, ok in (("a.test", True), ("x.b.test", False)):
            port = free_port()
            s = procs.sluice("\n".join([
                "workers: 1", "log: {level: info, access: off}", "listeners:",
                f"  - {{name: l4, bind: 127.0.0.1:{port}, mode: tcp, pool: app}}",
                "pools:", "  - name: app", "    timeouts: {connect: 1s}",
                f"    tls: {{ca_file: {pki['ca']}, server_name: {name}}}",
                "    backends:", f"      - {{name: tls1, address: 127.0.0.1:{origin.port}}}",
            ]) + "\n")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
                try:
                    data = recv_all(c)
                except ConnectionResetError:
                    data = b""
            if ok:
                assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"tls1\n"), data
            else:
                assert data == b""
                wait_for(lambda: any("pool=app backend=tls1" in l
                                     for l in s.log_lines("tls_handshake_failed")),
                         what="the failed backend handshake logged")
    finally:
        origin.stop()


def test_reload_takes_a_renewed_certificate(procs, pki, tmp_path):
    """Renewal: new files, a reload, and new connections get the new
    certificate while the port never closes. A world-readable key is
    warned about by sluice check."""
    cert, key = tmp_path / "site.pem", tmp_path / "site.key"
    cert.write_bytes(open(pki["a"][0], "rb").read())
    key.write_bytes(open(pki["a"][1], "rb").read())
    os.chmod(key, 0o644)
    o = procs.origin("b1")
    port = free_port()
    cfg = config(port, o.address, pki, certs=()).replace(
        "tls: {certificates: []}", f"tls: {{certificates: [{{cert: {cert}, key: {key}}}]}}")
    path = tmp_path / "c.yaml"
    path.write_text(cfg)
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "readable by every user" in r.stdout + r.stderr, r.stdout + r.stderr
    os.chmod(key, 0o600)
    s = procs.sluice(cfg)

    def serial():
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.check_hostname = False
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="a.test") as c:
            return c.getpeercert()["serialNumber"]

    before = serial()
    # A renewed certificate for the same name and key, from the same CA.
    d = pki["dir"]
    ext = tmp_path / "ext"
    ext.write_text("subjectAltName=DNS:a.test\n")
    csr = tmp_path / "a.csr"
    run(OPENSSL, "req", "-new", "-key", str(key), "-out", str(csr), "-subj", "/CN=a.test")
    run(OPENSSL, "x509", "-req", "-in", str(csr), "-CA", pki["ca"], "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    s.reload()
    wait_for(lambda: serial() != before, what="the renewed certificate served")
    assert https(port, pki) == (200, b"b1\n")


def test_client_certificates_both_ways(procs, pki):
    """mTLS: a listener with client_ca lets in only clients with a
    certificate from that CA and tells the backend who they are (a forged
    header is replaced); a pool with cert/key shows its certificate to a
    backend that asks for one."""
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki, extra_tls=f", client_ca: {pki['ca']}"))
    ctx = client_ctx(pki)
    ctx.load_cert_chain(*pki["client"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                         server_hostname="a.test") as c:
        c.sendall(b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n"
                  b"X-Client-Cert-Subject: CN=forged\r\n\r\n")
        data = recv_all(c)
    h = {k.lower(): v for k, v in json.loads(data.partition(b"\r\n\r\n")[2])["headers"]}
    assert h["x-client-cert-subject"] == "CN=client.test,O=Example"
    # Without a certificate: no request gets through.
    try:
        with client_ctx(pki).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                         server_hostname="a.test") as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            data = recv_all(c)
    except (ssl.SSLError, ConnectionResetError):
        data = b""
    assert not data.startswith(b"HTTP/")
    # Towards a backend that requires a client certificate.
    origin = TLSOrigin(*pki["a"], client_ca=pki["ca"])
    try:
        for extra, want in ((f", cert: {pki['client'][0]}, key: {pki['client'][1]}", 200), ("", 502)):
            p2 = free_port()
            procs.sluice(pool_tls_config(p2, origin.port,
                                         f"{{ca_file: {pki['ca']}, server_name: a.test{extra}}}"))
            assert plain_status(p2) == want, extra
    finally:
        origin.stop()


def test_pipelined_large_responses_to_a_slow_tls_reader(procs, pki):
    """Two pipelined requests for large bodies, read only after a pause:
    TLS writes must wait on a full socket and retry, with the second
    response's head and body growing meanwhile, and every byte arrives."""
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki))
    with client_ctx(pki).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                                     server_hostname="a.test") as c:
        c.sendall(b"GET /bytes/3000000 HTTP/1.1\r\nHost: a.test\r\n\r\n"
                  b"GET /bytes/3000001 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)                       # let both responses back up
        data = recv_all(c)
    assert data.count(b"HTTP/1.1 200 ") == 2
    assert len(data) > 6000001


def ocsp_response(pki, tmp_path, name, state="V"):
    """A DER OCSP response for pki[name], signed by the test CA through
    `openssl ocsp` acting as the responder (state V: good, R: revoked), and
    a certificate file with the chain after the leaf (the issuer the
    response is checked against)."""
    crt = pki[name][0]
    serial = subprocess.run([OPENSSL, "x509", "-in", crt, "-noout", "-serial"], check=True,
                            capture_output=True, text=True).stdout.strip().split("=")[1]
    subject = subprocess.run([OPENSSL, "x509", "-in", crt, "-noout", "-subject", "-nameopt",
                              "compat"], check=True, capture_output=True,
                             text=True).stdout.strip().split("=", 1)[1].strip()
    idx = tmp_path / f"index-{name}-{state}.txt"
    revoked = "260101000000Z" if state == "R" else ""
    idx.write_text(f"{state}\t301231000000Z\t{revoked}\t{serial}\tunknown\t{subject}\n")
    out = tmp_path / f"{name}-{state}.ocsp"
    run(OPENSSL, "ocsp", "-index", str(idx), "-rsigner", pki["ca"], "-rkey", str(pki["dir"] / "ca.key"),
        "-CA", pki["ca"], "-issuer", pki["ca"], "-cert", crt, "-respout", str(out), "-ndays", "1")
    chain = tmp_path / f"{name}-chain.pem"
    chain.write_text(open(crt).read() + open(pki["ca"]).read())
    return str(out), str(chain)


def s_client_status(port, host):
    r = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", host,
                        "-status"], input="", capture_output=True, text=True, timeout=20)
    return r.stdout


def curl_cert_status(port, pki, host):
    """curl over HTTPS to host on port, insisting on a stapled OCSP response
    (--cert-status): the finished process."""
    return subprocess.run([CURL, "-sS", "--cert-status", "--cacert", pki["ca"], "--resolve",
                           f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
                          capture_output=True, text=True, timeout=20)


def test_ocsp_stapling(procs, pki, tmp_path):
    o = procs.origin("b1")
    ocsp, chain = ocsp_response(pki, tmp_path, "a")
    port = free_port()
    certs = (f"{{cert: {chain}, key: {pki['a'][1]}, ocsp: {ocsp}}}, "
             f"{{cert: {pki['b'][0]}, key: {pki['b'][1]}}}")
    text = config(port, o.address, pki).replace(
        f"certificates: [{{cert: {pki['a'][0]}, key: {pki['a'][1]}}}, "
        f"{{cert: {pki['b'][0]}, key: {pki['b'][1]}}}]", f"certificates: [{certs}]")
    assert ocsp in text
    procs.sluice(text, wait_ports=[port])
    out = s_client_status(port, "a.test")
    assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
    # curl checks the stapled response, and fails without one.
    r = curl_cert_status(port, pki, "a.test")
    assert r.returncode == 0 and r.stdout.strip() == "b1", r.stderr
    # The other certificate (SNI) has no response to staple.
    assert "OCSP response: no response sent" in s_client_status(port, "x.b.test")
    r = curl_cert_status(port, pki, "x.b.test")
    assert r.returncode != 0


def test_ocsp_errors_in_check(pki, tmp_path):
    good, chain = ocsp_response(pki, tmp_path, "a")
    revoked, _ = ocsp_response(pki, tmp_path, "a", "R")
    other, _ = ocsp_response(pki, tmp_path, "b")
    junk = tmp_path / "junk.ocsp"
    junk.write_bytes(b"\x30\x03\x0a\x01\x00 not DER")
    path = tmp_path / "ocsp.yaml"
    cases = [
        (chain, revoked, "says the certificate in"),
        (chain, other, "is not about the certificate in"),
        (chain, str(junk), "is not an OCSP response"),
        (chain, str(tmp_path / "none.ocsp"), "cannot read"),
        (pki["a"][0], good, "does not hold the issuer of its certificate"),
    ]
    for cert, ocsp, want in cases:
        path.write_text("listeners:\n  - name: web\n    bind: 127.0.0.1:8443\n    mode: http\n"
                        "    pool: app\n    tls:\n      certificates:\n"
                        f"        - {{cert: {cert}, key: {pki['a'][1]}, ocsp: {ocsp}}}\n"
                        "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n")
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, r.stderr
        assert re.search(rf"{path}:8:\d+: error: .*tls\.certificates\[\]\.ocsp: .*{re.escape(want)}",
                         r.stderr), (want, r.stderr)


def ocsp_auto_cert(pki, tmp_path, responder_port, state="V"):
    """A certificate for ocsp.test whose Authority Information Access names
    an OCSP responder on responder_port, signed by the test CA; its chain
    file (leaf then CA), key, and an `openssl ocsp` index saying state."""
    d = tmp_path
    key, csr, crt, ext = (str(d / f"ocsp.{x}") for x in ("key", "csr", "pem", "ext"))
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:ocsp.test\n"
                f"authorityInfoAccess=OCSP;URI:http://127.0.0.1:{responder_port}/\n")
    run(OPENSSL, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/O=Example/CN=ocsp.test")
    run(OPENSSL, "x509", "-req", "-in", csr, "-CA", pki["ca"], "-CAkey", str(pki["dir"] / "ca.key"),
        "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
    serial = subprocess.run([OPENSSL, "x509", "-in", crt, "-noout", "-serial"], check=True,
                            capture_output=True, text=True).stdout.strip().split("=")[1]
    idx = d / "ocsp-index.txt"
    revoked = "260101000000Z" if state == "R" else ""
    idx.write_text(f"{state}\t301231000000Z\t{revoked}\t{serial}\tunknown\t/O=Example/CN=ocsp.test\n")
    chain = d / "ocsp-chain.pem"
    chain.write_text(open(crt).read() + open(pki["ca"]).read())
    return str(chain), key, str(idx)


class OcspResponder:
    """The CA's OCSP responder on loopback: an HTTP server that hands each
    POSTed request to `openssl ocsp` (with the index) and returns its DER
    answer. Counts the requests it answered."""

    def __init__(self, pki, idx, tmp_path, signer=None):
        import http.server
        import threading
        answered = self.answered = []
        signer = signer or (pki["ca"], str(pki["dir"] / "ca.key"))

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                req = tmp_path / f"req-{len(answered)}.der"
                out = tmp_path / f"resp-{len(answered)}.der"
                req.write_bytes(self.rfile.read(int(self.headers["Content-Length"])))
                run(OPENSSL, "ocsp", "-index", idx, "-rsigner", signer[0], "-rkey",
                    signer[1], "-CA", pki["ca"], "-reqin", str(req),
                    "-respout", str(out), "-ndays", "1")
                body = out.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                answered.append(len(body))

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def ocsp_auto_config(port, origin, chain, key, admin=None):
    return ("workers: 1\nlog: {level: info, access: stdout}\n" +
            (f"admin: {{listen: 127.0.0.1:{admin}}}\n" if admin else "") + "listeners:\n"
            f"  - name: web\n    bind: 127.0.0.1:{port}\n    mode: http\n    pool: app\n"
            f"    tls: {{certificates: [{{cert: {chain}, key: {key}, ocsp: auto}}]}}\n"
            f"pools:\n  - name: app\n    backends: [{{address: {origin}}}]\n")


def test_ocsp_auto_fetches_from_the_responder(procs, pki, tmp_path):
    o = procs.origin("b1")
    port, admin = free_port(), free_port()
    idx = str(tmp_path / "ocsp-index.txt")
    responder = OcspResponder(pki, idx, tmp_path)
    chain, key, _ = ocsp_auto_cert(pki, tmp_path, responder.port)
    try:
        s = procs.sluice(ocsp_auto_config(port, o.address, chain, key, admin),
                         wait_ports=[port, admin])
        wait_for(lambda: s.log_lines("tls_ocsp_fetched"), timeout=10, what="the first fetch")
        metric = (f'sluice_tls_ocsp_stapled{{listener="web",certificate="{chain}"}} 1')
        assert metric in urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics",
                                                timeout=5).read().decode()
        out = s_client_status(port, "ocsp.test")
        assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
        r = curl_cert_status(port, pki, "ocsp.test")
        assert r.returncode == 0 and r.stdout.strip() == "b1", r.stderr
        line = s.log_lines("tls_ocsp_fetched")[0]
        # A one-day response is fetched again within the hour.
        assert "refresh_in_s=3600" in line, line
        assert len(responder.answered) == 1      # nothing more until the refresh
    finally:
        responder.stop()


def test_ocsp_auto_without_a_responder_staples_nothing(procs, pki, tmp_path):
    o = procs.origin("b1")
    rport, port, admin = free_port(), free_port(), free_port()   # nothing listens on rport
    chain, key, _ = ocsp_auto_cert(pki, tmp_path, rport)
    s = procs.sluice(ocsp_auto_config(port, o.address, chain, key, admin), wait_ports=[port, admin])
    wait_for(lambda: s.log_lines("tls_ocsp_fetch_failed"), timeout=10, what="a failed fetch")
    metric = f'sluice_tls_ocsp_stapled{{listener="web",certificate="{chain}"}} 0'
    assert metric in urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics",
                                            timeout=5).read().decode()
    assert "retry_in_s=60" in s.log_lines("tls_ocsp_fetch_failed")[0]
    # Handshakes go on, without a staple.
    out = s_client_status(port, "ocsp.test")
    assert "OCSP response: no response sent" in out, out


def test_ocsp_auto_refuses_a_revoked_certificate(procs, pki, tmp_path):
    o = procs.origin("b1")
    port = free_port()
    idx = str(tmp_path / "ocsp-index.txt")
    responder = OcspResponder(pki, idx, tmp_path)
    chain, key, _ = ocsp_auto_cert(pki, tmp_path, responder.port, state="R")
    try:
        s = procs.sluice(ocsp_auto_config(port, o.address, chain, key), wait_ports=[port])
        wait_for(lambda: s.log_lines("tls_ocsp_not_good"), timeout=10, what="the revoked answer")
        assert "status=revoked" in s.log_lines("tls_ocsp_not_good")[0]
        assert "OCSP response: no response sent" in s_client_status(port, "ocsp.test")
    finally:
        responder.stop()


def test_ocsp_auto_refuses_an_answer_the_issuer_did_not_sign(procs, pki, tmp_path):
    # Signed with b.test's key: a certificate of the same CA, but not one it
    # made an OCSP responder.
    o = procs.origin("b1")
    port = free_port()
    idx = str(tmp_path / "ocsp-index.txt")
    responder = OcspResponder(pki, idx, tmp_path, signer=pki["b"])
    chain, key, _ = ocsp_auto_cert(pki, tmp_path, responder.port)
    try:
        s = procs.sluice(ocsp_auto_config(port, o.address, chain, key), wait_ports=[port])
        wait_for(lambda: s.log_lines("tls_ocsp_fetch_failed"), timeout=10, what="the refusal")
        assert "does not verify" in s.log_lines("tls_ocsp_fetch_failed")[0]
        assert responder.answered
        assert "OCSP response: no response sent" in s_client_status(port, "ocsp.test")
    finally:
        responder.stop()


def test_ocsp_auto_needs_a_responder_url(pki, tmp_path):
    _, chain = ocsp_response(pki, tmp_path, "a")      # a.test's names no responder
    path = tmp_path / "auto.yaml"
    path.write_text("listeners:\n  - name: web\n    bind: 127.0.0.1:8443\n    mode: http\n"
                    "    pool: app\n    tls:\n      certificates:\n"
                    f"        - {{cert: {chain}, key: {pki['a'][1]}, ocsp: auto}}\n"
                    "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n")
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert re.search(rf"{path}:8:\d+: error: .*ocsp: auto: .*names no OCSP responder", r.stderr), \
        r.stderr


def test_the_tls_example_runs(procs, pki, tmp_path):
    """examples/tls.yaml with the test's certificates, ports and origins in
    place of /etc/sluice's, 443, 80 and 10.0.x.x: sluice check accepts it,
    HTTPS is served by SNI, and plain HTTP is redirected to the same URL."""
    text = open(os.path.join(ROOT, "examples", "tls.yaml")).read()
    https_port, http_port, admin_port = free_port(), free_port(), free_port()
    app = [procs.origin("app"), procs.origin("app")]
    api = [procs.origin("api"), procs.origin("api")]
    for old, new in (("/etc/sluice/example.com.pem", pki["a"][0]),
                     ("/etc/sluice/example.com.key", pki["a"][1]),
                     ("/etc/sluice/api.example.com.pem", pki["b"][0]),
                     ("/etc/sluice/api.example.com.key", pki["b"][1]),
                     ("0.0.0.0:443", f"127.0.0.1:{https_port}"),
                     ("0.0.0.0:80", f"127.0.0.1:{http_port}"),
                     ("127.0.0.1:9901", f"127.0.0.1:{admin_port}"),
                     ("host: api.example.com", "host: x.b.test"),
                     ("workers: auto", "workers: 1"),
                     ("10.0.1.1:8080", app[0].address), ("10.0.1.2:8080", app[1].address),
                     ("10.0.3.1:8080", api[0].address), ("10.0.3.2:8080", api[1].address)):
        assert old in text, old
        text = text.replace(old, new)
    cfg = tmp_path / "tls.yaml"
    cfg.write_text(text)
    r = subprocess.run([SLUICE, "check", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    procs.sluice(text)
    wait_for(lambda: https(https_port, pki, host="a.test")[1] == b"app\n", what="the app pool up")
    wait_for(lambda: https(https_port, pki, host="x.b.test")[1] == b"api\n", what="the api pool up")
    r = subprocess.run([CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                        "-H", "Host: a.test", f"http://127.0.0.1:{http_port}/p/q?r=1"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout == "301 https://a.test/p/q?r=1", r.stdout + r.stderr
