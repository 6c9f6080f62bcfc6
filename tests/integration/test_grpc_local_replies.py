"""gRPC calls answered by sluice itself, as Envoy answers them: an error
sluice makes for a gRPC request (content-type application/grpc) reaches the
client as a "trailers-only" gRPC status (HTTP 200, grpc-status, a
percent-encoded grpc-message), which gRPC clients read as the call's
status, instead of an HTTP error status they can only guess from. And the
call's deadline (grpc-timeout) is sluice's too: a call still without an
answer at its deadline gets DEADLINE_EXCEEDED from sluice, a stream still
going is ended with it, and the backend's side is cancelled.

Clients: python3-grpcio for what a gRPC application sees, python3-h2 frame
by frame for the shape on the wire and for calls without a client-side
deadline (so that a DEADLINE_EXCEEDED can only be sluice's). Backends:
python3-grpcio servers run by the test (service test.Local, raw bytes)."""
import http.client
import json
import socket
import struct
import threading
import time
import urllib.parse
import warnings

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from harness import free_port, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt


class Backend:
    """A python3-grpcio server in this process, service test.Local:
      Echo   unary: the request back
      Slow   unary: the request back after 2 s (or after the request's
             value in ms, b"300" say); sets `cancelled` when the call is
             cancelled before that
      Ticks  server streaming: a message every 20 ms until cancelled, then
             sets `cancelled`
    and service test.Left:
      Left   unary: the call's time remaining in seconds, as the server
             read it from grpc-timeout ("none" without one)"""

    def __init__(self):
        from concurrent import futures
        self.cancelled = threading.Event()

        def echo(req, ctx):
            return req

        def slow(req, ctx):
            ms = int(req) if req.isdigit() else 2000
            end = time.monotonic() + ms / 1000
            while time.monotonic() < end:
                if not ctx.is_active():
                    self.cancelled.set()
                    return b""
                time.sleep(0.01)
            return req

        def ticks(req, ctx):
            ctx.add_callback(self.cancelled.set)
            i = 0
            while ctx.is_active():
                yield b"%d" % i
                i += 1
                time.sleep(0.02)

        def left(req, ctx):
            t = ctx.time_remaining()
            return b"none" if t is None or t > 1e6 else b"%.3f" % t

        handler = grpc.method_handlers_generic_handler("test.Local", {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
            "Ticks": grpc.unary_stream_rpc_method_handler(ticks),
        })
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        lefts = grpc.method_handlers_generic_handler("test.Left", {
            "Left": grpc.unary_unary_rpc_method_handler(left)})
        self.server.add_generic_rpc_handlers((handler, lefts))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self):
        self.server.stop(0).wait(5)


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.stop()


def config(port, address, listener="", pool="", routes="", default_pool=True, log_format="combined"):
    lines = ["workers: 1", f"log: {{level: debug, access: stdout, format: {log_format}}}",
             "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    http2: true"]
    if default_pool:
        lines.append("    pool: grpc")
    if listener:
        lines.append(listener.rstrip("\n"))
    if routes:
        lines.append(routes.rstrip("\n"))
    lines += ["pools:", "  - name: grpc", "    http2: true"]
    if pool:
        lines.append(pool.rstrip("\n"))
    lines += ["    backends:", f"      - {{name: g, address: {address}}}"]
    return "\n".join(lines) + "\n"


# The backend (grpcio) honours grpc-timeout itself, and would answer
# DEADLINE_EXCEEDED at about the same moment as sluice: where a test must
# know whose status it got, the route keeps the header from the backend.
NO_TIMEOUT_UPSTREAM = "\n".join([
    "    routes:",
    "      - {match: {path_prefix: /test.Local/}, pool: grpc, remove_headers: [grpc-timeout]}"])


def grpc_frame(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


class Call:
    """One gRPC call over its own HTTP/2 connection (python3-h2), with no
    deadline of the client's own: what comes back, frame by frame."""

    def __init__(self, port, path, payload=b"x", headers=(), end=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sid = self.conn.get_next_available_stream_id()
        hs = [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "t"),
              ("content-type", "application/grpc"), ("te", "trailers")]
        names = {n for n, _ in headers}
        hs = [h for h in hs if h[0] not in names] + list(headers)
        self.conn.send_headers(self.sid, hs)
        self.conn.send_data(self.sid, grpc_frame(payload), end_stream=end)
        self.sock.sendall(self.conn.data_to_send())
        self.started = time.monotonic()
        self.frames = []          # ("headers", dict, ended) ("data", bytes) ("trailers", dict) ("reset", code)
        self.ended = False
        self.elapsed = None

    def wait(self, timeout=10):
        """Until the stream ends or is reset (or the connection closes)."""
        end = time.monotonic() + timeout
        while not self.ended:
            assert time.monotonic() < end, f"the call did not end: ...{self.frames[-5:]}"
            data = self.sock.recv(65536)
            if not data:
                break
            for ev in self.conn.receive_data(data):
                if getattr(ev, "stream_id", self.sid) != self.sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    self.frames.append(("headers", dict(ev.headers), ev.stream_ended is not None))
                elif isinstance(ev, h2.events.DataReceived):
                    self.frames.append(("data", ev.data))
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    self.frames.append(("trailers", dict(ev.headers)))
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    self.frames.append(("reset", ev.error_code))
                    self.ended = True
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)
        self.elapsed = time.monotonic() - self.started
        self.sock.close()
        return self.frames

    def status(self):
        """The call's grpc-status and grpc-message (decoded), from the
        trailers, or the head of a trailers-only answer."""
        fields = {}
        for f in self.frames:
            if f[0] in ("headers", "trailers"):
                fields.update(f[1])
        return fields.get("grpc-status"), urllib.parse.unquote(fields.get("grpc-message", ""))


def grpc_error(port, method, payload=b"1", metadata=None):
    """The RpcError a grpcio client gets for a unary call that fails."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(method)(payload, timeout=10, metadata=metadata)
    return e.value


def access_line(s, needle):
    wait_for(lambda: needle in s.stdout(), what=f"an access line with {needle}")
    return [l for l in s.stdout().splitlines() if needle in l][-1]


def test_errors_sluice_makes_reach_grpc_clients_as_their_status(procs, backend, tmp_path):
    """Each error sluice makes for a gRPC call arrives at a grpcio client as
    the status gRPC's HTTP mapping gives it, with sluice's reason as the
    message: no route 404 UNIMPLEMENTED, every backend down 503, a rate
    limit's 429 and an upstream_response timeout's 504 UNAVAILABLE, auth's
    401 UNAUTHENTICATED. Before, each came as a bare HTTP status that grpcio
    turned into a status of its own guess, with no message."""
    dead = free_port()
    users = tmp_path / "users"
    users.write_text("ann:%s\n" % crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_SHA512)))
    cases = [
        # what, config, method, code, message
        ("no route", dict(default_pool=False,
                          routes="    routes:\n      - {match: {path_prefix: /other.}, pool: grpc}"),
         "/test.Local/Echo", grpc.StatusCode.UNIMPLEMENTED, "no route"),
        ("down", dict(address=f"127.0.0.1:{dead}",
                      pool="    health_check: {type: tcp, interval: 1s, timeout: 200ms}"),
         "/test.Local/Echo", grpc.StatusCode.UNAVAILABLE, "no backend available"),
        ("rate limit", dict(listener="    rate_limit: {rate: 1/m, burst: 0}"),
         "/test.Local/Echo", grpc.StatusCode.UNAVAILABLE, "too many requests"),
        ("timeout", dict(pool="    timeouts: {upstream_response: 300ms}"),
         "/test.Local/Slow", grpc.StatusCode.UNAVAILABLE, "gateway timeout"),
        ("auth", dict(listener=f"    auth: {{type: basic, realm: r, users_file: {users}}}"),
         "/test.Local/Echo", grpc.StatusCode.UNAUTHENTICATED, "authentication required"),
    ]
    for what, kw, method, code, message in cases:
        port = free_port()
        address = kw.pop("address", backend.address)
        s = procs.sluice(config(port, address, **kw), wait_ports=[port])
        if what == "rate limit":
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert ch.unary_unary("/test.Local/Echo")(b"first", timeout=10) == b"first"
        e = grpc_error(port, method, b"2000" if method.endswith("Slow") else b"1")
        assert (e.code(), e.details()) == (code, message), (what, e)
        # The access log keeps the HTTP status sent (200) and says which
        # gRPC status sluice gave, and why (end=).
        line = access_line(s, "grpc_status=")
        assert '"POST %s HTTP/2.0" 200 ' % method in line, (what, line)
        assert line.endswith(" grpc_status=%d" % code.value[0]), (what, line)
        s.stop()


def test_trailers_only_shape_and_plain_errors_for_other_requests(procs, backend):
    """On the wire: one HEADERS frame with END_STREAM (:status 200,
    content-type application/grpc, grpc-status, grpc-message
    percent-encoded), no DATA. A request that is not gRPC (no gRPC
    content-type, or grpc-web) still gets the plain HTTP error; a `respond`
    route of 400 and above is a gRPC status to a gRPC call, one below 400 is
    sent as written. HTTP/1.1 gRPC requests get the same fields in a 200
    head with content-length: 0."""
    port = free_port()
    routes = "\n".join([
        "    routes:",
        "      - {match: {path: /teapot}, respond: {status: 418, body: \"100% tea\\n\"}}",
        "      - {match: {path: /ok}, respond: {status: 200, body: \"fine\\n\"}}",
        "      - {match: {path_prefix: /test.}, pool: grpc}"])
    s = procs.sluice(config(port, backend.address, routes=routes, default_pool=False),
                     wait_ports=[port])
    c = Call(port, "/nowhere.Svc/M")
    frames = c.wait()
    assert len(frames) == 1 and frames[0][0] == "headers" and frames[0][2], frames
    head = frames[0][1]
    assert head[":status"] == "200" and head["content-type"] == "application/grpc", head
    assert head["grpc-status"] == "12" and head["grpc-message"] == "no route", head
    # A respond route's error: its body as the message, percent-encoded.
    c = Call(port, "/teapot")
    frames = c.wait()
    assert len(frames) == 1 and frames[0][2], frames
    assert frames[0][1]["grpc-status"] == "2" and frames[0][1]["grpc-message"] == "100%25 tea"
    # A respond route below 400 is the operator's answer, sent as written.
    c = Call(port, "/ok")
    frames = c.wait()
    assert frames[0][1][":status"] == "200" and "grpc-status" not in frames[0][1], frames
    assert frames[1] == ("data", b"fine\n"), frames
    # Not gRPC: plain HTTP errors, as before.
    for ctype in ("application/json", "application/grpc-web+proto"):
        c = Call(port, "/nowhere.Svc/M", headers=[("content-type", ctype)])
        frames = c.wait()
        assert frames[0][1][":status"] == "404" and "grpc-status" not in frames[0][1], frames
        assert ("data", b"no route\n") in frames, frames
    # A codec suffix is gRPC still; the call itself works through sluice.
    c = Call(port, "/test.Local/Echo", b"hey", headers=[("content-type", "application/grpc+proto")])
    c.wait()
    assert c.status() == ("0", "") and ("data", grpc_frame(b"hey")) in c.frames, c.frames
    # HTTP/1.1: the same fields in the head of a 200 with no body.
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h.request("POST", "/nowhere.Svc/M", body=grpc_frame(b"x"),
              headers={"Content-Type": "application/grpc", "TE": "trailers"})
    r = h.getresponse()
    assert r.status == 200 and r.read() == b"", r.status
    assert r.getheader("Content-Type") == "application/grpc"
    assert (r.getheader("grpc-status"), r.getheader("grpc-message")) == ("12", "no route")
    assert r.getheader("Content-Length") == "0"
    h.close()
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h.request("POST", "/nowhere.Svc/M", body=b"{}", headers={"Content-Type": "application/json"})
    r = h.getresponse()
    assert r.status == 404 and r.read() == b"no route\n" and r.getheader("grpc-status") is None
    h.close()
    line = access_line(s, '"POST /nowhere.Svc/M HTTP/1.1" 200 ')
    assert line.endswith(" end=client_close grpc_status=12"), line
    line = access_line(s, '"POST /nowhere.Svc/M HTTP/1.1" 404 ')
    assert "grpc_status" not in line, line


def test_grpc_timeout_ends_a_call_without_an_answer(procs, backend):
    """grpc-timeout: 200m on a call the backend answers after 2 s: sluice
    answers DEADLINE_EXCEEDED itself (trailers-only) at the deadline, long
    before the backend would, and cancels the backend's call. The client
    here has no deadline of its own, and the backend never sees the
    header, so the status can only be sluice's."""
    port = free_port()
    s = procs.sluice(config(port, backend.address, routes=NO_TIMEOUT_UPSTREAM), wait_ports=[port])
    c = Call(port, "/test.Local/Slow", b"2000", headers=[("grpc-timeout", "200m")])
    frames = c.wait()
    assert len(frames) == 1 and frames[0][0] == "headers" and frames[0][2], frames
    assert frames[0][1][":status"] == "200", frames
    assert c.status() == ("4", "deadline exceeded"), frames
    assert c.elapsed < 2.0, c.elapsed          # before the backend could have answered
    wait_for(backend.cancelled.is_set, what="the backend's call cancelled")
    line = access_line(s, "grpc_status=4")
    assert " 200 " in line and "end=grpc_deadline" in line, line
    # The same call over HTTP/1.1: the same fields in a 200 head.
    backend.cancelled.clear()
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h.request("POST", "/test.Local/Slow", body=grpc_frame(b"2000"),
              headers={"Content-Type": "application/grpc", "grpc-timeout": "200m"})
    r = h.getresponse()
    assert (r.status, r.read(), r.getheader("grpc-status"), r.getheader("grpc-message")) == \
        (200, b"", "4", "deadline exceeded")
    h.close()
    wait_for(backend.cancelled.is_set, what="the backend's call cancelled")


def test_grpc_timeout_within_the_deadline_and_later_than_upstream_response(procs, backend):
    """A call that ends before its deadline is untouched; a deadline later
    than upstream_response does not lengthen it (504 UNAVAILABLE comes
    first)."""
    port = free_port()
    s = procs.sluice(config(port, backend.address, pool="    timeouts: {upstream_response: 300ms}"),
                     wait_ports=[port])
    c = Call(port, "/test.Local/Slow", b"50", headers=[("grpc-timeout", "5S")])
    c.wait()
    assert c.status() == ("0", "") and ("data", grpc_frame(b"50")) in c.frames, c.frames
    c = Call(port, "/test.Local/Slow", b"2000", headers=[("grpc-timeout", "10S")])
    c.wait()
    assert c.status() == ("14", "gateway timeout"), c.frames
    s.stop()


def test_a_stream_that_outlives_its_deadline_ends_with_deadline_exceeded(procs, backend):
    """A server stream still sending at its deadline: the client gets the
    messages so far, then trailers with grpc-status 4 and END_STREAM (not a
    reset), and the backend's call is cancelled."""
    port = free_port()
    s = procs.sluice(config(port, backend.address, routes=NO_TIMEOUT_UPSTREAM, log_format="json"),
                     wait_ports=[port])
    c = Call(port, "/test.Local/Ticks", b"", headers=[("grpc-timeout", "300m")])
    frames = c.wait()
    assert frames[0][0] == "headers" and not frames[0][2] and frames[0][1][":status"] == "200"
    assert any(f[0] == "data" for f in frames), frames
    assert frames[-1][0] == "trailers", frames
    assert c.status() == ("4", "deadline exceeded"), frames
    assert not any(f[0] == "reset" for f in frames), frames
    wait_for(backend.cancelled.is_set, what="the backend's stream cancelled")
    rec = json.loads(access_line(s, '"grpc_status":4'))
    assert (rec["status"], rec["end"], rec["grpc_status"]) == (200, "grpc_deadline", 4), rec


def test_malformed_grpc_timeouts_are_ignored(procs, backend):
    """A grpc-timeout not in the spec's form (1 to 8 digits, a positive
    value, one unit of H M S m u n) is ignored as if absent, as Envoy does:
    the call, which takes 300 ms, succeeds whatever a lenient reading of the
    value would have made its deadline (the backend, which would read some
    of them its own way, does not see them here). A valid header still
    reaches the backend unchanged: the backend's call has its deadline."""
    port = free_port()
    routes = NO_TIMEOUT_UPSTREAM + "\n      - {match: {path_prefix: /test.Left/}, pool: grpc}"
    procs.sluice(config(port, backend.address, routes=routes, default_pool=False), wait_ports=[port])
    for value in ("0m", "00S", "1", "m", "1x", "1mm", "1 m", "1.5S", "-1S", "+1S", "0x1m",
                  "1ms", "123456789n", "1h", "1s"):
        c = Call(port, "/test.Local/Slow", b"300", headers=[("grpc-timeout", value)])
        c.wait()
        assert c.status() == ("0", "") and ("data", grpc_frame(b"300")) in c.frames, (value, c.frames)
    # A valid one reaches the backend as sent: its call has that deadline.
    c = Call(port, "/test.Left/Left", b"", headers=[("grpc-timeout", "5S")])
    c.wait()
    left = [f[1][5:] for f in c.frames if f[0] == "data"]
    assert c.status() == ("0", "") and left and 0 < float(left[0]) <= 5, c.frames
    # A valid one shorter than the call: DEADLINE_EXCEEDED.
    c = Call(port, "/test.Local/Slow", b"2000", headers=[("grpc-timeout", "100000u")])
    c.wait()
    assert c.status() == ("4", "deadline exceeded"), c.frames
