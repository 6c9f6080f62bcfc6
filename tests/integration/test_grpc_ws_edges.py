"""gRPC and WebSocket through sluice, at their edges: upgrades that must not
become tunnels (h2c, a 200 to an Upgrade, a 101 nobody asked for), the
tunnel's life (half-close, large frames, pings under tunnel_idle, an
upgrade on a pooled keep-alive connection), WebSockets over HTTP/2, and
gRPC calls (python3-grpcio) whose answers sluice makes or whose backend
misbehaves. Each test is the regression test of a bug found there, or pins
a behaviour a gRPC or WebSocket user relies on."""
import asyncio
import os
import socket
import threading
import time

import pytest

from harness import free_port, wait_for
from test_http_exchange_edges import ScriptedOrigin, read_head, read_response


def config(port, backends, listener_extra="", pool_extra="", http2=False, pool_http2=False):
    lines = ["workers: 1", "drain_timeout: 5s", "log: {level: debug, access: stdout}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app"]
    if http2:
        lines.append("    http2: true")
    if listener_extra:
        lines.append(listener_extra.rstrip("\n"))
    lines += ["pools:", "  - name: app", "    balance: round_robin"]
    if pool_http2:
        lines.append("    http2: true")
    if pool_extra:
        lines.append(pool_extra.rstrip("\n"))
    lines.append("    backends:")
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def read_until_close(s, timeout=10):
    """Everything until the peer closes (or resets); a peer that does
    neither within timeout fails the test (socket.timeout)."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return data
            data += d
    except ConnectionResetError:
        return data


# ---- upgrades that must not become tunnels ----

def test_h2c_upgrade_is_served_as_http11_and_never_tunnelled(procs):
    """`Upgrade: h2c` (RFC 7540's cleartext upgrade) is not offered: the
    request is served as HTTP/1.1 (docs/http2.md). It must not reach the
    backend as an upgrade either: a backend that speaks h2c would answer 101
    and the client would then talk HTTP/2 to it directly, through a tunnel
    that bypasses every route, auth and rate limit of sluice for all the
    requests it sends in there (the "h2c smuggling" attack)."""
    heads = []

    def script(c, i):
        data = b""
        while True:
            head, _, data = read_head(c, data).partition(b"\r\n\r\n")
            heads.append(head)
            if b"upgrade: h2c" in head.lower():
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          b"Upgrade: h2c\r\n\r\nSMUGGLED")
                time.sleep(2)
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        for upgrade in (b"h2c", b"H2C", b"websocket, h2c"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /public HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                          b"Upgrade: " + upgrade + b"\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
                st, _, body = read_response(s)
            assert st == 200 and body == b"plain", (upgrade, st, body)
            assert b"upgrade" not in heads[-1].lower(), heads[-1]
            assert b"http2-settings" not in heads[-1].lower(), heads[-1]
    finally:
        o.stop()


def test_200_to_an_upgrade_request_keeps_the_connections_plain_http(procs):
    """A backend that declines the upgrade (200 with a body instead of 101):
    both connections stay plain HTTP/1.1, the client's next request on the
    same connection is answered normally, and so is one that goes over the
    backend connection again."""
    heads = []

    def script(c, i):
        data = b""
        while True:
            head, _, data = read_head(c, data).partition(b"\r\n\r\n")
            heads.append((i, head.split(b"\r\n")[0]))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nno thx!")

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                      b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            st, hdrs, body = read_response(s)
            assert st == 200 and body == b"no thx!", (st, body)
            assert "upgrade" not in hdrs.get("connection", "").lower(), hdrs
            s.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
            st, _, body = read_response(s)
            assert st == 200 and body == b"no thx!"
    finally:
        o.stop()
    assert [h for _, h in heads] == [b"GET /ws HTTP/1.1", b"GET /next HTTP/1.1"], heads
    assert [i for i, _ in heads] == [0, 0], heads      # the backend connection was reused


def test_101_to_a_request_without_upgrade_is_a_bad_gateway(procs):
    """A 101 that the request never asked for (no Upgrade) is a broken
    answer: 502, and the backend's bytes after it never reach the client."""
    def script(c, i):
        read_head(c)
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\nTUNNEL")
        time.sleep(2)

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n")
            got = read_until_close(s)
        assert got.startswith(b"HTTP/1.1 502 "), got[:200]
        assert b"TUNNEL" not in got
    finally:
        o.stop()


# ---- the tunnel ----

def test_upgrade_on_a_pooled_connection_and_half_close(procs):
    """An Upgrade request that takes a pooled keep-alive backend connection
    (a plain GET went over it first) becomes a tunnel on it; when the client
    shuts its side, the backend sees EOF and can still answer, the client
    reads that answer, and the tunnelled connection never goes back to the
    pool: the next request opens a fresh one."""
    seen = []

    def script(c, i):
        data = b""
        while True:
            head, _, data = read_head(c, data).partition(b"\r\n\r\n")
            seen.append((i, head.split(b"\r\n")[0]))
            if b"upgrade: websocket" not in head.lower():
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                continue
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            while True:                     # echo until the client's EOF ...
                d = data or c.recv(65536)
                data = b""
                if not d:
                    break
                c.sendall(d)
            time.sleep(0.3)
            c.sendall(b"after your FIN")    # ... then say something more
            c.shutdown(socket.SHUT_WR)
            return

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s)[2] == b"ok"
        wait_for(lambda: len(seen) == 1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            data = read_head(s)
            assert data.startswith(b"HTTP/1.1 101 "), data
            rest = data.partition(b"\r\n\r\n")[2]
            s.sendall(b"ping-1")
            while len(rest) < 6:
                rest += s.recv(65536)
            assert rest == b"ping-1"
            s.shutdown(socket.SHUT_WR)
            assert read_until_close(s) == b"after your FIN"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s)[2] == b"ok"
    finally:
        o.stop()
    assert seen == [(0, b"GET /first HTTP/1.1"), (0, b"GET /ws HTTP/1.1"),
                    (1, b"GET /third HTTP/1.1")], seen


def test_websocket_large_frames_close_code_and_pings_under_tunnel_idle(procs):
    """python3-websockets both ends: 6 MiB messages each way, a tunnel kept
    alive past tunnel_idle by pings alone (they are traffic), the close
    handshake's code and reason carried through; a tunnel with no traffic at
    all is closed after tunnel_idle."""
    websockets = pytest.importorskip("websockets")
    codes = []

    async def handler(ws, *args):
        try:
            async for msg in ws:
                if msg == "close please":
                    await ws.close(4001, "as asked")
                    return
                await ws.send(msg)
        except websockets.exceptions.ConnectionClosed as e:
            codes.append(e.rcvd.code if e.rcvd else None)
        else:
            codes.append(ws.close_code)

    oport, port = free_port(), free_port()
    ready, stop = threading.Event(), {}

    async def serve():
        stop["f"] = asyncio.get_running_loop().create_future()
        stop["loop"] = asyncio.get_running_loop()
        async with websockets.serve(handler, "127.0.0.1", oport, max_size=None, ping_interval=None):
            ready.set()
            await stop["f"]

    th = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    th.start()
    assert ready.wait(5)
    try:
        s = procs.sluice(config(port, [("b", f"127.0.0.1:{oport}")],
                                "    timeouts: {tunnel_idle: 1s}"), wait_ports=[port])

        async def client():
            uri = f"ws://127.0.0.1:{port}/chat"
            async with websockets.connect(uri, max_size=None, ping_interval=None) as ws:
                big = os.urandom(6 * 1024 * 1024)
                await ws.send(big)
                assert await asyncio.wait_for(ws.recv(), 30) == big
                # 3 s of nothing but pings, every 300 ms: the tunnel stays.
                for _ in range(10):
                    await asyncio.wait_for(await ws.ping(), 10)
                    await asyncio.sleep(0.3)
                await ws.send("still here")
                assert await asyncio.wait_for(ws.recv(), 10) == "still here"
                await ws.send("close please")
                with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                    await asyncio.wait_for(ws.recv(), 10)
                assert e.value.rcvd.code == 4001 and e.value.rcvd.reason == "as asked"
            # Silence: closed by sluice after tunnel_idle (1 s).
            async with websockets.connect(uri, ping_interval=None) as ws:
                t0 = time.monotonic()
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 20)
                return time.monotonic() - t0

        idle = asyncio.run(client())
        assert idle > 0.8, idle
        wait_for(lambda: '"status":101' in s.stdout() or " 101 " in s.stdout(), what="access lines")
    finally:
        stop["loop"].call_soon_threadsafe(stop["f"].set_result, None)
        th.join(5)


def test_extended_connect_other_than_websocket_is_refused_cleanly(procs):
    """RFC 8441's extended CONNECT is offered (SETTINGS_ENABLE_CONNECT_PROTOCOL)
    for WebSockets only (tests/integration/test_h2_websocket.py): another
    protocol gets a stream error or 501, never a tunnel; the connection
    serves the next stream."""
    import h2.connection
    import h2.config
    import h2.events
    import h2.settings
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, [("b1", o.address)], http2=True), wait_ports=[port])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        remote = {}
        ends = {}

        def pump(until):
            deadline = time.monotonic() + 10
            while not until() and time.monotonic() < deadline:
                data = s.recv(65536)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RemoteSettingsChanged):
                        remote.update({k: v.new_value for k, v in ev.changed_settings.items()})
                    elif isinstance(ev, h2.events.ResponseReceived):
                        ends[ev.stream_id] = dict(ev.headers)[":status"]
                    elif isinstance(ev, h2.events.StreamReset):
                        ends[ev.stream_id] = "reset"
                s.sendall(conn.data_to_send())

        pump(lambda: remote)
        assert remote.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 1, remote
        conn.send_headers(1, [(":method", "CONNECT"), (":protocol", "connect-udp"), (":scheme", "http"),
                              (":path", "/chat"), (":authority", "t"),
                              ("sec-websocket-version", "13")])
        s.sendall(conn.data_to_send())
        pump(lambda: 1 in ends)
        assert ends.get(1) in ("reset", "501", "400"), ends
        conn.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":path", "/"),
                              (":authority", "t")], end_stream=True)
        s.sendall(conn.data_to_send())
        pump(lambda: 3 in ends)
        assert ends.get(3) == "200", ends


# ---- gRPC ----

class GrpcBackend:
    """A python3-grpcio server in this process (service test.Edge, raw
    bytes), with 16 MiB message limits:
      Big     unary: a message of the length the request names, of 'b's
      Size    client streaming: the total length received
      Ticks   server streaming: a message every 20 ms until cancelled;
              `cancelled` is set once the server sees the cancellation
      Chat    bidirectional: each request back as it comes
      Slow    unary: the request back after 3 s"""

    def __init__(self):
        import grpc
        from concurrent import futures
        self.cancelled = threading.Event()

        def big(req, ctx):
            return b"b" * int(req)

        def size(it, ctx):
            return b"%d" % sum(len(x) for x in it)

        def ticks(req, ctx):
            ctx.add_callback(self.cancelled.set)
            i = 0
            while ctx.is_active():
                yield b"%d" % i
                i += 1
                time.sleep(0.02)

        def chat(it, ctx):
            for x in it:
                yield x

        def slow(req, ctx):
            time.sleep(3)
            return req

        handler = grpc.method_handlers_generic_handler("test.Edge", {
            "Big": grpc.unary_unary_rpc_method_handler(big),
            "Size": grpc.stream_unary_rpc_method_handler(size),
            "Ticks": grpc.unary_stream_rpc_method_handler(ticks),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
        })
        opts = [("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_send_message_length", 16 << 20)]
        self.server = grpc.server(futures.ThreadPoolExecutor(8), options=opts)
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self):
        self.server.stop(0)


GRPC_OPTS = [("grpc.max_receive_message_length", 16 << 20),
             ("grpc.max_send_message_length", 16 << 20)]


def test_grpc_large_messages_and_long_streams(procs):
    """Messages far over gRPC's 4 MiB default (12 MiB each way, limits
    raised at both ends) and a bidirectional call held open with messages
    going back and forth one at a time: flow control through sluice's
    64 KiB stream windows on both sides lets all of it through."""
    grpc = pytest.importorskip("grpc")
    b = GrpcBackend()
    port = free_port()
    try:
        procs.sluice(config(port, [("g", b.address)], http2=True, pool_http2=True), wait_ports=[port])
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTS) as ch:
            got = ch.unary_unary("/test.Edge/Big")(b"%d" % (12 << 20), timeout=60)
            assert got == b"b" * (12 << 20)
            parts = [os.urandom(12 << 20), os.urandom(1 << 20)]
            assert ch.stream_unary("/test.Edge/Size")(iter(parts), timeout=60) == b"%d" % (13 << 20)
            # One at a time: each answer must come back before the next is sent.
            import queue
            q = queue.Queue()
            call = ch.stream_stream("/test.Edge/Chat")(iter(q.get, None), timeout=60)
            for i in range(30):
                msg = os.urandom(100_000 if i % 3 == 0 else 10)
                q.put(msg)
                assert next(call) == msg
                time.sleep(0.02)
            q.put(None)
            assert list(call) == []
            assert call.code() == grpc.StatusCode.OK
    finally:
        b.stop()


def test_grpc_client_cancel_reaches_the_backend(procs):
    """A client that cancels a server-streaming call mid-stream: sluice
    resets the backend's stream (CANCEL), so the server sees the
    cancellation and stops producing, and the session to the backend stays
    usable for the next call."""
    grpc = pytest.importorskip("grpc")
    b = GrpcBackend()
    port = free_port()
    try:
        procs.sluice(config(port, [("g", b.address)], http2=True, pool_http2=True), wait_ports=[port])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_stream("/test.Edge/Ticks")(b"", timeout=60)
            assert [next(call) for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]
            call.cancel()
            assert b.cancelled.wait(10), "the backend never saw the cancellation"
            assert ch.unary_unary("/test.Edge/Big")(b"3", timeout=10) == b"bbb"
            # A deadline that passes mid-stream is a cancellation too.
            b.cancelled.clear()
            call = ch.unary_stream("/test.Edge/Ticks")(b"", timeout=1.5)
            with pytest.raises(grpc.RpcError) as e:
                for _ in call:
                    pass
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert b.cancelled.wait(10), "the backend never saw the deadline's cancellation"
    finally:
        b.stop()


def grpc_frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def test_grpc_backend_resets_and_trailers_only(procs):
    """A backend written frame by frame (python3-h2): per path it answers
    trailers-only (HEADERS with grpc-status and END_STREAM), resets the
    stream before answering, or resets it after two messages. grpcio gets a
    proper status every time, and the client connection goes on."""
    grpc = pytest.importorskip("grpc")
    from test_upstream_h2_edges import H2Backend, send

    def serve(conn, sock, events):
        for ev in events:
            if not isinstance(ev, h2_events().RequestReceived):
                continue
            sid, path = ev.stream_id, dict(ev.headers)[":path"]
            if path.endswith("/TrailersOnly"):
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                        ("grpc-status", "7"), ("grpc-message", "go away")],
                                  end_stream=True)
            elif path.endswith("/ResetFirst"):
                conn.reset_stream(sid, 2)           # INTERNAL_ERROR, before any answer
            elif path.endswith("/ResetLater"):
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                conn.send_data(sid, grpc_frame(b"one") + grpc_frame(b"two"))
                send(conn, sock)
                time.sleep(0.2)
                conn.reset_stream(sid, 8)           # CANCEL, mid-stream
            else:
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                conn.send_data(sid, grpc_frame(b"fine"))
                conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            send(conn, sock)

    b = H2Backend(serve, limit=30)
    port = free_port()
    try:
        s = procs.sluice(config(port, [("g", b.address)], http2=True, pool_http2=True), wait_ports=[port])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary("/t.S/TrailersOnly")(b"x", timeout=10)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value
            assert e.value.details() == "go away"
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary("/t.S/ResetFirst")(b"x", timeout=10)
            assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), e.value
            call = ch.unary_stream("/t.S/ResetLater")(b"x", timeout=10)
            got = []
            with pytest.raises(grpc.RpcError) as e:
                for m in call:
                    got.append(m)
            assert got == [b"one", b"two"]
            assert e.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
                                      grpc.StatusCode.UNAVAILABLE), e.value
            assert ch.unary_unary("/t.S/Ok")(b"x", timeout=10) == b"fine"
        assert not b.errors, b.errors
        assert s.alive()
    finally:
        b.stop()


def h2_events():
    import h2.events
    return h2.events


def test_http10_client_of_an_http2_pool_gets_no_chunked_body(procs):
    """A response from an `http2` pool has no HTTP/1.1 framing of its own;
    sluice gives it chunked framing for HTTP/1.1 clients, but an HTTP/1.0
    client must never get chunked (RFC 9112 6.1): it would read the chunk
    sizes as part of the body. It gets the body as it is, ended by the
    close; trailers have no place there and are dropped."""
    from test_upstream_h2_edges import H2Backend, send

    def serve(conn, sock, events):
        for ev in events:
            if isinstance(ev, h2_events().RequestReceived):
                sid = ev.stream_id
                conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
                conn.send_data(sid, b"hello ")
                conn.send_data(sid, b"world")
                if dict(ev.headers)[":path"] == "/trailers":
                    conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                else:
                    conn.end_stream(sid)
                send(conn, sock)

    b = H2Backend(serve, limit=20)
    port = free_port()
    try:
        procs.sluice(config(port, [("g", b.address)], pool_http2=True), wait_ports=[port])
        for path in ("/plain", "/trailers"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET %s HTTP/1.0\r\nHost: t\r\n\r\n" % path.encode())
                got = read_until_close(s)
            head, _, body = got.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), got
            assert b"transfer-encoding" not in head.lower(), got
            assert body == b"hello world", got
            # HTTP/1.1 keeps the chunked framing, and the trailers in it.
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
                got = read_until_close(s)
            assert b"transfer-encoding: chunked" in got.lower(), got
            assert got.endswith(b"0\r\ngrpc-status: 0\r\n\r\n" if path == "/trailers" else b"0\r\n\r\n"), got
        assert not b.errors, b.errors
    finally:
        b.stop()


def test_grpc_call_refused_by_a_backend_goes_to_the_next_one(procs):
    """A stream the backend refused unprocessed (RST_STREAM REFUSED_STREAM,
    or one past the last stream of its GOAWAY, as a gRPC server shutting
    down gracefully sends) may be sent again (RFC 9113 8.7): like a refused
    connect, sluice sends the call, body and all, to the next backend, and
    the client never sees the refusal. A stream reset any other way may
    have been processed: that POST is not replayed."""
    grpc = pytest.importorskip("grpc")
    from test_upstream_h2_edges import H2Backend, send
    served = []

    def good(conn, sock, events):
        bodies = {}
        for ev in events:
            if isinstance(ev, h2_events().DataReceived):
                bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2_events().StreamEnded):
                sid = ev.stream_id
                served.append(bodies.get(sid, b""))
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                conn.send_data(sid, grpc_frame(b"got %d" % len(bodies.get(sid, b""))))
                conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            send(conn, sock)

    def refusing(how):
        def serve(conn, sock, events):
            for ev in events:
                if isinstance(ev, h2_events().RequestReceived):
                    if how == "goaway":
                        conn.close_connection(error_code=0, last_stream_id=0)
                        send(conn, sock)
                        time.sleep(0.3)
                        return
                    conn.reset_stream(ev.stream_id, 7 if how == "refuse" else 2)
                send(conn, sock)
        return serve

    body = os.urandom(10_000)        # kept whole in sluice's buffer, so it can be sent again
    for how in ("goaway", "refuse", "internal"):
        bad, ok = H2Backend(refusing(how)), H2Backend(good)
        port = free_port()
        served.clear()
        try:
            s = procs.sluice(config(port, [("bad", bad.address), ("ok", ok.address)], http2=True,
                                    pool_http2=True), wait_ports=[port])
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                # round_robin: the first call goes to "bad", the second to "ok".
                call = ch.stream_unary("/t.S/Upload")
                if how == "internal":
                    with pytest.raises(grpc.RpcError) as e:
                        call(iter([body]), timeout=10)
                    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
                    assert served == []
                else:
                    assert call(iter([body]), timeout=10) == b"got %d" % (len(body) + 5), how
                    assert served == [grpc_frame(body)], how
                assert call(iter([b"x"]), timeout=10) == b"got 6"
            s.stop()
        finally:
            bad.stop()
            ok.stop()


def test_grpc_status_of_answers_sluice_makes(procs):
    """Answers sluice makes itself to a gRPC call (no backend reachable, the
    backend too slow, a rate limit) are HTTP statuses that gRPC clients map
    to UNAVAILABLE (gRPC's HTTP-to-status mapping), the code a client's
    retry policy retries: never an opaque protocol error."""
    grpc = pytest.importorskip("grpc")
    b = GrpcBackend()
    dead = free_port()
    cases = [
        ("no backend", [("d", f"127.0.0.1:{dead}")], "", ""),
        ("timeout", [("g", b.address)], "", "    timeouts: {upstream_response: 500ms}"),
        ("rate limit", [("g", b.address)], "    rate_limit: {rate: 1/m, burst: 0}", ""),
    ]
    try:
        for what, backends, listener, pool in cases:
            port = free_port()
            s = procs.sluice(config(port, backends, listener, pool, http2=True, pool_http2=True),
                             wait_ports=[port])
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                if what == "rate limit":
                    assert ch.unary_unary("/test.Edge/Big")(b"1", timeout=10) == b"b"
                with pytest.raises(grpc.RpcError) as e:
                    ch.unary_unary("/test.Edge/Slow" if what == "timeout" else "/test.Edge/Big")(
                        b"1", timeout=10)
                assert e.value.code() == grpc.StatusCode.UNAVAILABLE, (what, e.value)
            s.stop()
    finally:
        b.stop()
