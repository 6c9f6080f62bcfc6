"""Request mirroring through the real binary: a route's `mirror` sends a copy
of a share of its requests to another pool and drops that pool's answers.
The copies are checked at a recording origin this file starts; the clients'
answers must come from the route's own pool, whatever the mirror does."""
import hashlib
import http.client
import http.server
import itertools
import json
import re
import socket
import socketserver
import threading
import time
import urllib.request

from harness import AcceptLoop, free_port, read_request_body, wait_for


class Recorder:
    """An HTTP/1.1 keep-alive origin that records every request it gets:
    method, target, headers (lowercased names) and the body's SHA-256."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                body = read_request_body(self)
                with rec.lock:
                    rec.requests.append({
                        "method": self.command, "target": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "fields": [(k.lower(), v) for k, v in self.headers.items()],
                        "sha": hashlib.sha256(body).hexdigest(), "len": len(body)})
                out = b"shadow answer that nobody should see\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            # socketserver's backlog is 5: on a loaded machine the copies'
            # connects overflowed it, were retried after a second by the
            # kernel, and met the shadow pool's 500 ms connect timeout.
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def config(port, admin, app_addr, shadow_addr, mirror="{pool: shadow}", route_extra="",
           shadow_timeouts="{connect: 500ms, upstream_response: 1s}", listener_extra=""):
    return f"""workers: 1
drain_timeout: 2s
admin: {{listen: 127.0.0.1:{admin}}}
log: {{level: debug, access: stdout}}
listeners:
  - name: web
    bind: 127.0.0.1:{port}
    mode: http
{listener_extra}    routes:
      - match: {{path_prefix: /api/}}
        pool: app
        strip_prefix: /api
        mirror: {mirror}
{route_extra}      - match: {{path_prefix: /}}
        pool: app
pools:
  - name: app
    timeouts: {{connect: 1s, upstream_response: 5s}}
    backends: [{{name: a1, address: {app_addr}}}]
  - name: shadow
    timeouts: {shadow_timeouts}
    backends: [{{name: s1, address: {shadow_addr}}}]
"""


def mirror_counts(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    out = {}
    for m in re.finditer(r'^sluice_mirror_requests_total\{pool="shadow",result="(\w+)"\} (\d+)$',
                         text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def request(conn, method, path, body=None, headers=None):
    headers = headers or {}
    conn.request(method, path, body=body, headers=headers,
                 encode_chunked="Transfer-Encoding" in headers)
    r = conn.getresponse()
    return r.status, r.getheader("X-Request-Id"), r.read()


def test_mirror_copies_the_request_as_forwarded_and_drops_the_answer(procs):
    app = procs.origin("a1")
    shadow = Recorder()
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, f"127.0.0.1:{shadow.port}"),
                     wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sent = []
        for i in range(20):
            st, rid, body = request(c, "GET", f"/api/echo/{i}?q={i}",
                                    headers={"X-Tag": f"t{i}"})
            assert st == 200
            # The client's answer is the route's backend's, never the mirror's.
            assert json.loads(body)["name"] == "a1"
            sent.append((f"/echo/{i}?q={i}", rid, f"t{i}"))
        payload = bytes(range(256)) * 40          # 10 KB, Content-Length
        st, rid_post, body = request(c, "POST", "/api/upload", body=payload,
                                     headers={"Content-Type": "application/octet-stream"})
        assert st == 200
        chunks = iter([b"hello ", b"chunked ", b"world"])
        st, rid_chunked, _ = request(c, "PUT", "/api/chunked", body=chunks,
                                     headers={"Transfer-Encoding": "chunked"})
        assert st == 200
        # The recording origin answers 100 Continue first: the copy reads on
        # to the real answer.
        st, rid_expect, _ = request(c, "POST", "/api/expect", body=b"e" * 1000,
                                    headers={"Expect": "100-continue"})
        assert st == 200
        # Not under the mirrored route: no copy.
        assert request(c, "GET", "/echo")[0] == 200
        c.close()

        # Copies go out after their answers: a loaded machine may take a while.
        wait_for(lambda: shadow.count() == 23, timeout=15, what="23 copies at the mirror")
        time.sleep(0.3)
        assert shadow.count() == 23
        got = {r["headers"]["x-request-id"]: r for r in shadow.requests}
        for target, rid, tag in sent:
            r = got[rid]                           # the same request id as the real one
            assert r["method"] == "GET"
            assert r["target"] == target           # strip_prefix applied, as for a1
            assert r["headers"]["x-tag"] == tag
            assert r["headers"]["x-forwarded-for"] == "127.0.0.1"
        post = got[rid_post]
        assert post["method"] == "POST" and post["target"] == "/upload"
        assert post["len"] == len(payload)
        assert post["sha"] == hashlib.sha256(payload).hexdigest()
        put = got[rid_chunked]
        assert put["sha"] == hashlib.sha256(b"hello chunked world").hexdigest()
        assert got[rid_expect]["len"] == 1000
        wait_for(lambda: mirror_counts(admin).get("ok") == 23, what="23 ok in the metrics")
        assert mirror_counts(admin) == {"ok": 23, "failed": 0, "skipped": 0}
    finally:
        shadow.stop()


def start_with_origins(procs, mirror="{pool: shadow}"):
    """sluice in front of sluice-origin a1 (the route's pool) and s1 (the
    mirror); returns (listener port, admin port, s1)."""
    app = procs.origin("a1")
    shadow = procs.origin("s1")
    port, admin = free_port(), free_port()
    procs.sluice(config(port, admin, app.address, shadow.address, mirror=mirror),
                 wait_ports=[port, admin])
    return port, admin, shadow


def test_mirror_set_headers_mark_the_copy_only(procs):
    app = procs.origin("a1")
    shadow = Recorder()
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, f"127.0.0.1:{shadow.port}",
                            mirror="{pool: shadow, set_headers: {X-Shadow: '1', x-tag: copy}}"),
                     wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        st, rid, body = request(c, "GET", "/api/echo", headers={"X-Tag": "real"})
        c.close()
        assert st == 200
        # The route's own backend got the request as the client sent it.
        seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert seen["x-tag"] == "real" and "x-shadow" not in seen
        wait_for(lambda: shadow.count() == 1, what="the copy")
        fields = shadow.requests[0]["fields"]
        # The copy: x-tag replaced (not doubled), x-shadow added, the rest kept.
        assert [v for k, v in fields if k == "x-tag"] == ["copy"]
        assert [v for k, v in fields if k == "x-shadow"] == ["1"]
        assert dict(fields)["x-request-id"] == rid
    finally:
        shadow.stop()


def test_mirror_set_headers_copy_a_long_request_line(procs):
    """A request line the listener allows (max_request_line up to 64 KiB)
    is copied with the mirror's set_headers too: the copy's head was parsed
    again with the parser's default limits (8 KiB request line, 100
    fields), and a longer one was dropped as unparsable."""
    app = procs.origin("a1")
    shadow = Recorder()
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, f"127.0.0.1:{shadow.port}",
                            mirror="{pool: shadow, set_headers: {X-Shadow: '1'}}",
                            listener_extra="    limits: {max_request_line: 32768}\n"),
                     wait_ports=[port, admin])
        path = "/api/" + "a" * 12000
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        st, _, _ = request(c, "GET", path)
        c.close()
        assert st == 200
        wait_for(lambda: shadow.count() == 1, what="the copy")
        assert shadow.requests[0]["target"] == "/" + "a" * 12000
        assert shadow.requests[0]["headers"]["x-shadow"] == "1"
    finally:
        shadow.stop()


def test_mirror_percent_sends_that_share(procs):
    port, admin, shadow = start_with_origins(procs, mirror="{pool: shadow, percent: 25}")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 1000
    for _ in range(n):
        assert request(c, "GET", "/api/")[0] == 200
    c.close()
    wait_for(lambda: sum(mirror_counts(admin).values()) > 0, what="mirror metrics")
    time.sleep(0.5)
    counts = mirror_counts(admin)
    # Binomial(1000, 0.25): mean 250, sd 13.7; 6 sd either side.
    assert 168 <= counts["ok"] <= 332, counts
    assert counts["failed"] == 0 and counts["skipped"] == 0
    stats = json.loads(urllib.request.urlopen(f"http://{shadow.address}/stats", timeout=5).read())
    assert stats["requests"] - 1 == counts["ok"]


def test_a_silent_or_dead_mirror_costs_the_client_nothing(procs):
    app = procs.origin("a1")
    silent = AcceptLoop(lambda c: None)        # accepts, and never answers
    port, admin = free_port(), free_port()
    dead = free_port()
    try:
        # Route 1 mirrors to a backend that never answers (1 s timeout); route
        # 2 to a port where nothing listens.
        extra = ("      - match: {path_prefix: /dead/}\n        pool: app\n"
                 "        mirror: {pool: nobody}\n")
        cfg = config(port, admin, app.address, f"127.0.0.1:{silent.port}", route_extra=extra)
        cfg += f"  - name: nobody\n    backends: [{{name: d1, address: 127.0.0.1:{dead}}}]\n"
        procs.sluice(cfg, wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(10):
            t0 = time.monotonic()
            st, _, body = request(c, "GET", "/api/x")
            assert st == 200 and body == b"a1\n"
            # Well under the mirror's 1 s timeout: nobody waited for it.
            assert time.monotonic() - t0 < 0.5
            assert request(c, "POST", "/dead/y", body=b"z" * 100)[0] == 200
        c.close()
        wait_for(lambda: mirror_counts(admin).get("failed") == 10, timeout=5,
                 what="10 silent copies timed out")
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        assert 'sluice_mirror_requests_total{pool="nobody",result="failed"} 10' in text
    finally:
        silent.stop()


def test_mirror_skips_what_it_cannot_copy(procs):
    port, admin, _ = start_with_origins(procs)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    big = b"x" * (1024 * 1024 + 1)                # above the default max_body_size, 1m
    st, _, body = request(c, "POST", "/api/upload", body=big)
    assert st == 200
    assert request(c, "GET", "/api/")[0] == 200
    c.close()
    wait_for(lambda: mirror_counts(admin) == {"ok": 1, "failed": 0, "skipped": 1},
             what="one copy sent, the big one skipped")


def test_mirror_config_errors(tmp_path):
    import subprocess
    from harness import SLUICE
    base = config(1, 2, "127.0.0.1:3", "127.0.0.1:4")
    cases = [
        (base.replace("mirror: {pool: shadow}", "mirror: {pool: missing}"),
         "mirror.pool: pool 'missing' is not defined"),
        (base.replace("mirror: {pool: shadow}", "mirror: {pool: shadow, percent: 101}"),
         "mirror.percent"),
        (base.replace("mirror: {pool: shadow}", "mirror: {percent: 5}"), "mirror.pool"),
        (base.replace("        pool: app\n        strip_prefix: /api\n",
                      "        respond: {status: 200}\n"),
         "mirror needs a route that forwards"),
    ]
    for i, (text, want) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, (want, r.stdout, r.stderr)
        assert want in r.stdout + r.stderr, (want, r.stdout + r.stderr)
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: ", r.stdout + r.stderr)


class Scripted:
    """A raw HTTP/1.1 mirror backend on a free loopback port whose answers
    are written byte by byte: answer(conn_index, request_index, method,
    target) returns the bytes to send and whether to close after them
    (None: close without answering). Requests carry no body here."""

    def __init__(self, answer):
        self.answer = answer
        self.lock = threading.Lock()
        self.seen = []                 # (connection, request on it, method, target)
        self.nconns = 0
        self.loop = AcceptLoop(self._conn)
        self.address = self.loop.address

    def _conn(self, sock):
        with self.lock:
            index = self.nconns
            self.nconns += 1
        threading.Thread(target=self._serve, args=(sock, index), daemon=True).start()

    def _serve(self, sock, conn):
        sock.settimeout(30)            # bounded: a request that never comes ends it
        f = sock.makefile("rb")
        try:
            for n in itertools.count():
                line = f.readline()
                if not line:
                    return
                method, target = (x.decode() for x in line.split(b" ")[:2])
                while f.readline() not in (b"\r\n", b""):
                    pass                   # the fields: nothing here reads them
                with self.lock:
                    self.seen.append((conn, n, method, target))
                out = self.answer(conn, n, method, target)
                if out is not None:
                    sock.sendall(out[0])
                if out is None or out[1]:
                    return
        except OSError:
            return
        finally:
            f.close()
            sock.close()

    def stop(self):
        self.loop.stop()


def test_mirror_counts_any_answer_and_logs_why_a_copy_failed(procs):
    """Any whole answer counts ok, whatever its status (a 503, an
    unasked-for 101) and however it is framed (Content-Length, chunked,
    the close, a HEAD's bodiless answer); an answer that does not parse
    counts failed, with an event=mirror_failed line at debug, as a dead
    mirror backend's copies do."""
    def answer(conn, n, method, target):
        if target == "/s503":
            return b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\n\r\nbusy\n", False
        if target == "/upgrade":
            return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", False
        if target == "/head":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", False
        if target == "/close":
            return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", True
        if target == "/chunked":
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n"), False
        return b"not an answer\r\n\r\n", True

    app = procs.origin("a1")
    shadow = Scripted(answer)
    port, admin = free_port(), free_port()
    dead = free_port()
    try:
        extra = ("      - match: {path_prefix: /dead/}\n        pool: app\n"
                 "        mirror: {pool: nobody}\n")
        cfg = config(port, admin, app.address, shadow.address, route_extra=extra)
        cfg += f"  - name: nobody\n    backends: [{{name: d1, address: 127.0.0.1:{dead}}}]\n"
        s = procs.sluice(cfg, wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i, (method, path) in enumerate([("GET", "/api/s503"), ("GET", "/api/upgrade"),
                                            ("HEAD", "/api/head"), ("GET", "/api/close"),
                                            ("GET", "/api/chunked"), ("GET", "/api/bad")]):
            assert request(c, method, path)[0] == 200
            # One copy at a time: each ends before the next goes.
            wait_for(lambda: sum(mirror_counts(admin).values()) == i + 1, timeout=10,
                     what=f"copy {path} ended")
        assert request(c, "GET", "/dead/x")[0] == 200
        c.close()
        assert mirror_counts(admin) == {"ok": 5, "failed": 1, "skipped": 0}
        wait_for(lambda: len(s.log_lines("mirror_failed")) == 2, what="two mirror_failed lines")
        bad, dead_line = sorted(s.log_lines("mirror_failed"), key=lambda l: "pool=nobody" in l)
        assert "pool=shadow backend=s1 why=" in bad
        assert 'pool=nobody backend=d1 why="connect failed"' in dead_line
        assert [t for _, _, _, t in shadow.seen] == ["/s503", "/upgrade", "/head", "/close",
                                                     "/chunked", "/bad"]
        assert shadow.seen[2][2] == "HEAD"
    finally:
        shadow.stop()


def test_a_reused_connection_the_mirror_backend_closed_is_replaced(procs):
    """The mirror backend answers the first request on a connection and
    closes the connection on the second, before answering: each copy that
    took that idle connection is sent again, once, on a new one, and
    counts ok."""
    def answer(conn, n, method, target):
        if n == 0:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", False
        return None

    app = procs.origin("a1")
    shadow = Scripted(answer)
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, shadow.address), wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(5):
            assert request(c, "GET", f"/api/{i}")[0] == 200
            wait_for(lambda: sum(mirror_counts(admin).values()) == i + 1, timeout=10,
                     what=f"copy {i} ended")
        c.close()
        assert mirror_counts(admin) == {"ok": 5, "failed": 0, "skipped": 0}
        # Copies 1..4 each went out twice: on the stale connection, then
        # on a new one, where they were the first request.
        assert shadow.nconns == 5
        firsts = sorted(t for conn, n, _, t in shadow.seen if n == 0)
        assert firsts == [f"/{i}" for i in range(5)]
        assert sorted(t for conn, n, _, t in shadow.seen if n == 1) == [f"/{i}" for i in range(1, 5)]
    finally:
        shadow.stop()


def test_copies_to_a_drained_mirror_backend_are_cut_at_its_drain_timeout(procs):
    """Copies waiting on a mirror backend that never answers (30 s
    upstream_response) end, counted failed with why="backend drained",
    once that backend is drained and its pool's drain_timeout ran out."""
    app = procs.origin("a1")
    silent = AcceptLoop(lambda c: None)        # accepts, and never answers
    port, admin = free_port(), free_port()
    try:
        cfg = config(port, admin, app.address, silent.address,
                     shadow_timeouts="{connect: 5s, upstream_response: 30s}")
        cfg = cfg.replace("  - name: shadow\n", "  - name: shadow\n    drain_timeout: 300ms\n")
        s = procs.sluice(cfg, wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(3):
            assert request(c, "GET", f"/api/{i}")[0] == 200
        c.close()
        wait_for(lambda: len(silent.conns) == 3, what="three copies at the silent backend")
        a = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        a.request("POST", "/api/v1/pools/shadow/backends/s1/drain")
        assert a.getresponse().status == 200
        a.close()
        wait_for(lambda: mirror_counts(admin).get("failed") == 3, timeout=10,
                 what="three copies cut by the drain")
        assert mirror_counts(admin) == {"ok": 0, "failed": 3, "skipped": 0}
        assert all('why="backend drained"' in l for l in s.log_lines("mirror_failed"))
    finally:
        silent.stop()


def test_at_most_256_copies_in_flight_per_worker(procs):
    """With 256 copies waiting on a mirror backend that never answers, the
    next ones are skipped (the client's answers unaffected); a copy that
    ends makes room again."""
    app = procs.origin("a1")
    silent = AcceptLoop(lambda c: None)
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, silent.address,
                            shadow_timeouts="{connect: 5s, upstream_response: 30s}"),
                     wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(300):
            assert request(c, "GET", f"/api/{i}")[0] == 200
        wait_for(lambda: mirror_counts(admin).get("skipped") == 44, timeout=10,
                 what="44 copies skipped")
        wait_for(lambda: len(silent.conns) == 256, timeout=10, what="256 copies in flight")
        assert mirror_counts(admin) == {"ok": 0, "failed": 0, "skipped": 44}
        # The silent backend closes one connection: that copy fails, and
        # the next request's copy goes.
        silent.conns[0].close()
        wait_for(lambda: mirror_counts(admin).get("failed") == 1, timeout=10,
                 what="the closed copy failed")
        assert request(c, "GET", "/api/again")[0] == 200
        wait_for(lambda: len(silent.conns) == 257, timeout=10, what="a new copy in flight")
        c.close()
        assert mirror_counts(admin) == {"ok": 0, "failed": 1, "skipped": 44}
    finally:
        silent.stop()
