"""HTTP/2 on http listeners (`http2: true`), with real clients: curl
(prior knowledge and ALPN over TLS), h2load, and python3-h2 speaking the
protocol frame by frame. Streams are balanced per request, bodies go both
ways with and without content-length, flow control holds a slow reader's
memory, bad heads get their status, resets and GOAWAY on shutdown work,
and listeners without http2 stay HTTP/1.1."""
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

from harness import SLUICE, AcceptLoop, free_port, http_get, recv_all, wait_for

CURL = "/usr/bin/curl"
H2LOAD = "/usr/bin/h2load"
NGHTTP = "/usr/bin/nghttp"


def config(port, backends, extra_listener="", extra_pool="", tls="", routes="", http2=True,
           log="access: off"):
    lines = ["workers: 1", f"log: {{level: info, {log}}}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app"]
    if http2:
        lines.append("    http2: true")
    if tls:
        lines.append(f"    tls: {tls}")
    if extra_listener:
        lines.append(extra_listener)
    if routes:
        lines.append(routes)
    lines += ["pools:", "  - name: app", "    balance: round_robin"]
    if extra_pool:
        lines.append(extra_pool)
    lines.append("    backends:")
    lines += [f"      - {{name: {b.origin_name}, address: {b.address}}}" for b in backends]
    return "\n".join(lines) + "\n"


class H2Client:
    """One HTTP/2 connection driven by python3-h2, frame by frame."""

    def __init__(self, port, sock=None, window=None, validate=True):
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if window:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.responses = {}       # stream id -> {"headers", "body", "ended", "reset"}
        self.terminated = None    # the GOAWAY's error code, when one came
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path="/", method="GET", headers=(), body=None, end=True, authority="t"):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)]
        self.conn.send_headers(sid, hs + list(headers), end_stream=end and body is None)
        self.flush()
        self.responses[sid] = {"headers": None, "body": b"", "ended": False, "reset": None}
        if body is not None:
            self.send_body(sid, body, end)
        return sid

    def send_body(self, sid, data, end=False):
        """DATA frames as the windows and the frame size allow."""
        while data:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                assert self.pump(), "the connection closed while sending"
                continue
            self.conn.send_data(sid, data[:room])
            data = data[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self, ack=True):
        """Read once and handle the events; False once the peer closed."""
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            r = self.responses.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                r["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                r["body"] += ev.data
                if ack:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                r["ended"] = True
            elif isinstance(ev, h2.events.StreamReset) and r is not None:
                r["reset"] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev.error_code
        self.flush()
        return True

    def wait(self, sids, timeout=10):
        end = time.monotonic() + timeout
        while not all(self.responses[s]["ended"] or self.responses[s]["reset"] is not None
                      for s in sids):
            assert time.monotonic() < end, "HTTP/2 responses did not come"
            if not self.pump():
                break
        return [self.responses[s] for s in sids]

    def get(self, path="/", **kw):
        return self.wait([self.request(path, **kw)])[0]

    def close(self):
        self.sock.close()


def curl(*args, timeout=30):
    return subprocess.run([CURL, "-sS", *args], capture_output=True, timeout=timeout)


def test_prior_knowledge_with_curl_routes_and_logs(procs):
    o1, o2 = procs.origin("b1"), procs.origin("b2")
    port = free_port()
    routes = "\n".join(["    routes:", "      - match: {host: api.test}", "        pool: api"])
    text = config(port, [o1], routes=routes, log="access: stdout") + "\n".join([
        "  - name: api", "    backends:", f"      - {{name: b2, address: {o2.address}}}"]) + "\n"
    s = procs.sluice(text, wait_ports=[port])
    r = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", f"http://127.0.0.1:{port}/")
    assert r.returncode == 0 and r.stdout == b"b1\n\n2", r
    # Routing sees :authority as the host.
    r = curl("--http2-prior-knowledge", "-H", "Host: api.test", f"http://127.0.0.1:{port}/")
    assert r.stdout == b"b2\n", r
    # The request upstream: HTTP/1.1 with the fields, cookies joined, forwarding headers.
    r = curl("--http2-prior-knowledge", "-H", "Cookie: a=1", "-H", "Cookie: b=2", "-H", "X-Test: yes",
             f"http://127.0.0.1:{port}/echo")
    echo = json.loads(r.stdout)
    h = {k.lower(): v for k, v in echo["headers"]}
    assert echo["version"] == "HTTP/1.1" and echo["method"] == "GET"
    assert h["cookie"] == "a=1; b=2" and h["x-test"] == "yes"
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-proto"] == "http"
    assert len(h["x-request-id"]) == 32
    # HEAD: the head only.
    r = curl("--http2-prior-knowledge", "-I", f"http://127.0.0.1:{port}/")
    assert r.stdout.startswith(b"HTTP/2 200") and b"content-length: 3" in r.stdout, r
    # HTTP/1.1 on the same listener still works.
    assert http_get(port)[0] == 200
    wait_for(lambda: s.stdout().count("HTTP/2.0") >= 4, what="HTTP/2 access log lines")
    assert re.search(r'"GET /echo HTTP/2\.0" 200 .* backend=b1 ', s.stdout()), s.stdout()
    assert '"GET / HTTP/1.1" 200' in s.stdout()


def test_streams_of_one_connection_are_balanced_per_request(procs):
    origins = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port = free_port()
    procs.sluice(config(port, origins), wait_ports=[port])
    c = H2Client(port)
    sids = [c.request("/") for _ in range(30)]          # 30 streams in flight at once
    got = c.wait(sids)
    assert all(r["headers"][":status"] == "200" for r in got)
    names = [r["body"] for r in got]
    assert {b"b1\n", b"b2\n", b"b3\n"} == set(names)
    assert all(names.count(n) == 10 for n in set(names)), names
    c.close()
    # Many connections and streams: every request answered.
    r = subprocess.run([H2LOAD, "-n", "6000", "-c", "6", "-m", "20", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True, timeout=60)
    assert "6000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    assert "status codes: 6000 2xx" in r.stdout, r.stdout


def test_request_bodies_with_and_without_length(procs, tmp_path):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, [o]), wait_ports=[port])
    # No content-length: sent upstream chunked, byte for byte.
    c = H2Client(port)
    parts = [os.urandom(n) for n in (1, 16000, 70000, 5)]
    sid = c.request("/echo", method="POST", end=False)
    for p in parts:
        c.send_body(sid, p)
        # Empty DATA frames between the parts change nothing (nghttp2 does not
        # hand them to sluice; h2.c would not make a last chunk of one anyway).
        c.conn.send_data(sid, b"")
        c.flush()
    c.send_body(sid, b"", end=True)
    r = c.wait([sid])[0]
    echo = json.loads(r["body"])
    body = b"".join(parts)
    assert echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert ["Transfer-Encoding", "chunked"] in echo["headers"]
    c.close()
    # With content-length (curl): 8 MB up, the same bytes arrive.
    f = tmp_path / "up.bin"
    data = os.urandom(8 << 20)
    f.write_bytes(data)
    r = curl("--http2-prior-knowledge", "--data-binary", f"@{f}", f"http://127.0.0.1:{port}/echo")
    echo = json.loads(r.stdout)
    assert echo["body_length"] == len(data) and echo["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_downloads_and_a_slow_reader_stay_bounded(procs):
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, [o]), wait_ports=[port])
    r = curl("--http2-prior-knowledge", "-o", "-", f"http://127.0.0.1:{port}/bytes/30000000", timeout=60)
    assert len(r.stdout) == 30000000, r.stderr
    # A reader that gives its window back slowly: sluice holds the backend
    # off instead of buffering the 100 MB.
    rss0 = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{s.pid}/status").read()).group(1))
    c = H2Client(port, window=65535)
    sid = c.request("/bytes/100000000")
    c.sock.settimeout(0.1)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            c.pump(ack=False)
        except socket.timeout:
            pass
    rss1 = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{s.pid}/status").read()).group(1))
    assert rss1 - rss0 < 8 * 1024, (rss0, rss1)
    got = len(c.responses[sid]["body"])
    assert 0 < got <= 65535 + 16384, got
    c.close()


def test_tls_alpn_h2(procs, pki):
    o = procs.origin("b1")
    port = free_port()
    tls = f"{{certificates: [{{cert: {pki['a'][0]}, key: {pki['a'][1]}}}]}}"
    procs.sluice(config(port, [o], tls=tls), wait_ports=[port])
    r = curl("--http2", "--cacert", pki["ca"], "--resolve", f"a.test:{port}:127.0.0.1",
             "-w", "\n%{http_version}", f"https://a.test:{port}/echo")
    body, _, version = r.stdout.rpartition(b"\n")
    assert version == b"2", r
    h = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert h["x-forwarded-proto"] == "https"
    # ALPN: h2 first; a client that offers only HTTP/1.1 gets it.
    for offer, want in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.set_alpn_protocols(offer)
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="a.test") as tsock:
            assert tsock.selected_alpn_protocol() == want
            if want == "h2":
                c = H2Client(port, sock=tsock)
                assert c.get("/")["body"] == b"b1\n"
    r = curl("--http1.1", "--cacert", pki["ca"], "--resolve", f"a.test:{port}:127.0.0.1",
             "-w", "\n%{http_version}", f"https://a.test:{port}/")
    assert r.stdout == b"b1\n\n1.1", r
    # Many streams over TLS at once.
    r = subprocess.run([H2LOAD, "-n", "3000", "-c", "4", "-m", "20", f"https://127.0.0.1:{port}/"],
                       capture_output=True, text=True, timeout=60)
    assert "3000 succeeded, 0 failed, 0 errored" in r.stdout and "h2" in r.stdout, r.stdout


def test_bad_heads_get_their_status(procs):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, [o], extra_listener="    limits: {max_header_size: 4096}"),
                 wait_ports=[port])
    c = H2Client(port, validate=False)
    # A path nghttp2 refuses: the stream is reset (PROTOCOL_ERROR).
    r = c.get("nopath")
    assert r["headers"] is None and r["reset"] == 1, r
    # One it lets through that HTTP/1.1 cannot carry: the HTTP/1.1 parser's 400.
    assert c.get("/a#b")["headers"][":status"] == "400"
    # Header fields beyond the listener's limit: 431.
    r = c.get("/", headers=[("x-big", "v" * 6000)])
    assert r["headers"][":status"] == "431"
    # CONNECT: no tunnels over HTTP/2.
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True)
    c.flush()
    c.responses[sid] = {"headers": None, "body": b"", "ended": False, "reset": None}
    assert c.wait([sid])[0]["headers"][":status"] == "501"
    # The connection is still good.
    assert c.get("/")["body"] == b"b1\n"
    c.close()



def test_paths_are_normalised_as_for_http1(procs):
    """:path goes through the listener's path normalisation: a rule on
    /admin/ holds against dot segments and encoded letters, the backend gets
    the normalised path, and a path climbing above the root gets 400."""
    o = procs.origin("b1")
    port = free_port()
    deny = ("    routes:\n      - match: {path_prefix: /admin/}\n"
            "        respond: {status: 403, body: \"no\\n\"}")
    procs.sluice(config(port, [o], routes=deny), wait_ports=[port])
    c = H2Client(port, validate=False)
    for path in ("/x/../admin/", "/%61dmin/", "//admin/"):
        assert c.get(path)["headers"][":status"] == "403", path
    r = c.get("/a/./../echo//b%7e?q")
    assert json.loads(r["body"])["target"] == "/echo/b~?q"
    assert c.get("/../echo")["headers"][":status"] == "400"
    assert c.get("/")["body"] == b"b1\n"     # only that stream ended
    c.close()


class RecordingOrigin:
    """Reads one HTTP/1.1 request per connection up to the end of its
    chunked body (or its head, without one), keeps the bytes, answers 200."""

    def __init__(self):
        self.requests = []
        self.loop = AcceptLoop(self._serve)
        self.address = self.loop.address

    def _serve(self, conn):
        def run():
            data = b""
            conn.settimeout(5)
            try:
                while not (data.endswith(b"\r\n\r\n") and
                           (b"chunked" not in data.lower() or b"\r\n0\r\n" in data)):
                    d = conn.recv(65536)
                    if not d:
                        return
                    data += d
                self.requests.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            finally:
                conn.close()
        threading.Thread(target=run, daemon=True).start()


def test_request_trailers_reach_an_http1_backend(procs):
    """HTTP/2 request trailers become the chunked body's trailer section;
    fields a trailer section must not hold are dropped there."""
    o = RecordingOrigin()
    port = free_port()
    procs.sluice(config(port, []).replace("    backends:\n",
                                          f"    backends:\n      - {{name: rec, address: {o.address}}}\n"),
                 wait_ports=[port])
    c = H2Client(port)
    sid = c.request("/upload", method="POST", end=False)
    c.send_body(sid, b"x" * 5000)
    c.conn.send_headers(sid, [("x-checksum", "sha256=abc"), ("host", "elsewhere"),
                              ("x-count", "2")], end_stream=True)
    c.flush()
    r = c.wait([sid])[0]
    assert r["headers"] and r["headers"][":status"] == "200", r
    wait_for(lambda: o.requests, what="the request at the origin")
    head, body = o.requests[0].split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"\r\n0\r\nx-checksum: sha256=abc\r\nx-count: 2\r\n\r\n"), body[-80:]
    # A Content-Length among trailers (nghttp2 has checked it against the
    # DATA) is framing, and stays out of the trailer section.
    sid = c.request("/upload", method="POST", end=False)
    c.send_body(sid, b"y" * 10)
    c.conn.send_headers(sid, [("content-length", "10"), ("x-n", "1")], end_stream=True)
    c.flush()
    assert c.wait([sid])[0]["headers"][":status"] == "200"
    wait_for(lambda: len(o.requests) == 2, what="the second request at the origin")
    assert o.requests[1].endswith(b"\r\n0\r\nx-n: 1\r\n\r\n"), o.requests[1][-60:]
    c.close()
    o.loop.stop()

def test_reset_streams_and_backend_errors(procs):
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, [o], log="access: stdout"), wait_ports=[port])
    c = H2Client(port)
    slow = c.request("/delay/2000")
    time.sleep(0.2)
    c.conn.reset_stream(slow)
    c.flush()
    assert c.get("/")["body"] == b"b1\n"
    wait_for(lambda: "end=client_reset" in s.stdout(), what="the reset stream's log line")
    # A backend answer that ends early: that stream is reset, the connection lives.
    r = c.get("/status/503")
    assert r["headers"][":status"] == "503"
    o.stop()
    r = c.get("/")
    assert r["headers"][":status"] == "502"
    c.close()


def test_shutdown_sends_goaway_and_finishes_streams(procs):
    # nghttp (nghttp2's client) prints every frame; python3-h2 stops reading
    # at a GOAWAY, so it cannot see the answer that follows one.
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, [o]), wait_ports=[port])
    p = subprocess.Popen([NGHTTP, "-v", f"http://127.0.0.1:{port}/delay/700"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    time.sleep(0.3)
    s.send_signal(15)
    out = p.communicate(timeout=10)[0].decode(errors="replace")
    assert p.returncode == 0, out
    goaway = out.index("recv GOAWAY")
    assert out.index(":status: 200") > goaway and "\nb1\n" in out, out
    wait_for(lambda: not s.alive(), what="sluice to exit")


def test_idle_connection_is_closed(procs):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, [o], extra_listener="    timeouts: {client_idle: 1s}"), wait_ports=[port])
    c = H2Client(port)
    assert c.get("/")["body"] == b"b1\n"
    t0 = time.monotonic()
    c.sock.settimeout(5)
    while c.pump():
        pass
    assert 0.8 < time.monotonic() - t0 < 3.5
    assert c.terminated == 0


def test_listener_without_http2_refuses_the_preface(procs):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, [o], http2=False), wait_ports=[port])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sk:
        sk.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        data = recv_all(sk)
    assert re.match(rb"HTTP/1\.1 (400|505) ", data), data
    r = curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/")
    assert r.returncode != 0


def test_config_http2_only_on_http_listeners(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("listeners:\n  - name: t\n    bind: 127.0.0.1:1\n    mode: tcp\n    pool: p\n"
                    "    http2: true\npools:\n  - name: p\n    backends: [{address: 127.0.0.1:2}]\n")
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and f"{path}:6:5:" in r.stderr and "http2" in r.stderr, r.stderr
    path.write_text("listeners:\n  - name: t\n    bind: 127.0.0.1:1\n    mode: http\n    pool: p\n"
                    "    http2: yes\npools:\n  - name: p\n    backends: [{address: 127.0.0.1:2}]\n")
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and f"{path}:6:" in r.stderr, r.stderr
