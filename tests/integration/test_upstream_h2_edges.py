"""Edges of HTTP/2 towards backends (`http2: true` pools, proxy/h2_upstream.c),
of request mirroring (proxy/mirror.c) and of response trailers given to
HTTP/2 clients (proxy/h2.c), each against a backend written here frame by
frame (python3-h2) or byte by byte, so that the exact case is produced."""
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from harness import AcceptLoop, free_port


def h2_pool_config(port, backend_address, extra_pool=""):
    return "\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app",
        "pools:", "  - name: app", "    http2: true", "    balance: round_robin",
        extra_pool or "    timeouts: {upstream_response: 5s}",
        "    backends:", f"      - {{name: b1, address: {backend_address}}}", ""])


class H2Backend:
    """An HTTP/2 backend (prior knowledge) on a free loopback port: each
    connection runs serve(conn, sock, events) on its own thread, where conn
    is a server-side H2Connection and events yields h2 events as they come
    (stops when the peer closes, or after `limit` seconds)."""

    def __init__(self, serve, settings=None, limit=10.0):
        self.serve, self.settings, self.limit = serve, settings or {}, limit
        self.errors = []
        self.loop = AcceptLoop(lambda s: threading.Thread(target=self._run, args=(s,),
                                                          daemon=True).start())
        self.address = self.loop.address

    def _run(self, sock):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=cfg)
        conn.local_settings = h2.settings.Settings(client=False, initial_values=self.settings)
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        end = time.monotonic() + self.limit

        def events():
            sock.settimeout(0.2)
            while time.monotonic() < end:
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for ev in conn.receive_data(data):
                    yield ev
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)

        try:
            self.serve(conn, sock, events())
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))

    def stop(self):
        self.loop.stop()


def send(conn, sock):
    out = conn.data_to_send()
    if out:
        sock.sendall(out)


def http1_exchange(port, raw, timeout=5.0):
    """Send raw bytes, read until sluice closes or the timeout passes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(raw)
    got = b""
    end = time.monotonic() + timeout
    s.settimeout(0.5)
    while time.monotonic() < end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not d:
            break
        got += d
    s.close()
    return got


def test_early_answer_then_window_update_does_not_touch_a_freed_stream(procs):
    """A backend may answer (END_STREAM) before it has taken the whole
    request body, and open its flow-control window later. Once the exchange
    has released its stream, nghttp2 must never call back into it: the
    stream's request body source must be gone (the stream reset), or a late
    WINDOW_UPDATE makes sluice read freed memory."""
    done = threading.Event()

    def serve(conn, sock, events):
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                sid = ev.stream_id
                conn.send_headers(sid, [(":status", "200"), ("content-length", "3")])
                conn.send_data(sid, b"ok\n", end_stream=True)
                send(conn, sock)
                time.sleep(1.0)       # the exchange ends and releases its stream
                conn.increment_flow_control_window(1 << 20)
                conn.increment_flow_control_window(1 << 20, stream_id=sid)
                send(conn, sock)
                time.sleep(1.0)
                done.set()
                return

    be = H2Backend(serve)
    port = free_port()
    s = procs.sluice(h2_pool_config(port, be.address), wait_ports=[port])
    try:
        body = b"x" * 200000
        got = http1_exchange(port, b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                             % len(body) + body)
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
        assert done.wait(8)
        time.sleep(0.3)
        assert s.alive(), s.stderr()[-3000:]
        assert "Sanitizer" not in s.stderr(), s.stderr()[-4000:]
    finally:
        be.stop()


def test_backend_trailers_drop_connection_specific_fields_for_h2_clients(procs):
    """An HTTP/1.1 backend's chunked trailer section may carry fields that
    are connection-specific in HTTP/2 (Connection, Keep-Alive,
    Proxy-Connection, Upgrade, a TE other than
    "trailers"). Sent on to an HTTP/2 client they make the response
    malformed (RFC 9113 8.2.2) and the client resets the stream; they must
    be dropped, and the other trailers delivered."""
    def on_conn(c):
        def run():
            c.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    d = c.recv(65536)
                    if not d:
                        return
                    data += d
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                          b"Trailer: x-kept\r\n\r\n3\r\nabc\r\n0\r\n"
                          b"Connection: x\r\nKeep-Alive: timeout=5\r\nProxy-Connection: close\r\n"
                          b"Upgrade: foo\r\nTE: gzip\r\n"
                          b"X-Kept: yes\r\n\r\n")
                time.sleep(2)
            except OSError:
                pass
        threading.Thread(target=run, daemon=True).start()

    be = AcceptLoop(on_conn)
    port = free_port()
    procs.sluice("\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    http2: true", "    pool: app",
        "pools:", "  - name: app", "    backends:", f"      - {{name: b1, address: {be.address}}}",
        ""]), wait_ports=[port])
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                              (":authority", "t"), ("te", "trailers")], end_stream=True)
        s.sendall(conn.data_to_send())
        body, trailers, reset, ended = b"", None, None, False
        end = time.monotonic() + 5
        while not ended and reset is None and time.monotonic() < end:
            d = s.recv(65536)
            if not d:
                break
            try:
                evs = conn.receive_data(d)
            except h2.exceptions.ProtocolError as e:
                reset = repr(e)
                break
            for ev in evs:
                if isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    reset = ev.error_code
            out = conn.data_to_send()
            if out:
                s.sendall(out)
        s.close()
        assert reset is None, f"the client saw a malformed response: {reset}"
        assert ended and body == b"abc"
        assert trailers is not None and trailers.get("x-kept") == "yes", trailers
        for name in ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
                     "upgrade", "te"):
            assert name not in trailers, trailers
    finally:
        be.stop()


def serve_pending(bodies):
    """serve() for H2Backend: answers each request with bodies[path] (200),
    sending DATA as the backend's windows allow, all streams together."""
    def serve(conn, sock, events):
        pending = {}

        def pump():
            for sid in list(pending):
                data = pending[sid]
                while data:
                    room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    conn.send_data(sid, data[:room])
                    data = data[room:]
                pending[sid] = data
                if not data:
                    conn.end_stream(sid)
                    del pending[sid]
            send(conn, sock)

        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                path = dict(ev.headers)[":path"]
                conn.send_headers(ev.stream_id, [(":status", "200")])
                pending[ev.stream_id] = bodies[path]
            elif isinstance(ev, h2.events.StreamReset):
                pending.pop(ev.stream_id, None)
            pump()
    return serve


def test_a_client_that_reads_nothing_does_not_stall_other_streams(procs):
    """Streams of many clients share one session to a backend. A client
    that stops reading may hold its own stream's window (what waits in
    sluice for it), but not the whole connection's: another request on the
    same session must still be answered at once, not wait for the slow
    client's timeout."""
    be = H2Backend(serve_pending({"/big": b"b" * (16 << 20), "/small": b"small answer\n"}),
                   limit=15)
    port = free_port()
    procs.sluice(h2_pool_config(port, be.address), wait_ports=[port])
    slow = socket.socket()
    try:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        slow.settimeout(2)
        assert slow.recv(100).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)        # sluice fills the slow client's socket, then its window
        t0 = time.monotonic()
        got = http1_exchange(port, b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                             timeout=8)
        took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 200") and b"small answer" in got, got[:300]
        assert took < 2, f"the second request waited {took:.1f}s behind a client that reads nothing"
    finally:
        slow.close()
        be.stop()


class RawTinyFrameBackend:
    """An HTTP/2 backend written frame by frame: it answers the first
    request with 200 and then a body of b"z" in DATA frames of one byte
    each, as fast as sluice's flow-control windows allow, up to `total`.
    `sent` is how many body bytes it has sent so far."""

    def __init__(self, total, limit=10.0):
        self.total, self.limit, self.sent = total, limit, 0
        self.loop = AcceptLoop(lambda s: threading.Thread(target=self._run, args=(s,),
                                                          daemon=True).start())
        self.address = self.loop.address

    @staticmethod
    def frame(ftype, flags, sid, payload=b""):
        return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) +
                sid.to_bytes(4, "big") + payload)

    def _run(self, sock):
        end = time.monotonic() + self.limit
        sock.settimeout(0.05)
        sock.sendall(self.frame(4, 0, 0))                   # SETTINGS
        buf, preface, sid = b"", False, None
        conn_win, stream_init, stream_win = 65535, 65535, None
        one = None
        try:
            while time.monotonic() < end:
                try:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                except socket.timeout:
                    pass
                if not preface:
                    if len(buf) < 24:
                        continue
                    buf, preface = buf[24:], True
                while len(buf) >= 9:
                    n = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + n:
                        break
                    ftype, flags = buf[3], buf[4]
                    fsid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    payload, buf = buf[9:9 + n], buf[9 + n:]
                    if ftype == 4 and not flags & 1:               # SETTINGS
                        for i in range(0, len(payload), 6):
                            if int.from_bytes(payload[i:i + 2], "big") == 4:
                                stream_init = int.from_bytes(payload[i + 2:i + 6], "big")
                        sock.sendall(self.frame(4, 1, 0))
                    elif ftype == 1 and sid is None:               # HEADERS
                        sid = fsid
                        stream_win = stream_init
                        one = self.frame(0, 0, sid, b"z")
                        sock.sendall(self.frame(1, 4, sid, b"\x88"))  # :status 200
                    elif ftype == 8:                                # WINDOW_UPDATE
                        inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
                        if fsid == 0:
                            conn_win += inc
                        elif fsid == sid:
                            stream_win += inc
                    elif ftype == 3 and fsid == sid:               # RST_STREAM
                        return
                if sid is not None:
                    k = min(conn_win, stream_win, self.total - self.sent, 20000)
                    if k > 0:
                        sock.sendall(one * k)
                        conn_win -= k
                        stream_win -= k
                        self.sent += k
        except OSError:
            return

    def stop(self):
        self.loop.stop()


def wait_still(be, limit):
    """Wait until be.sent stops moving for a second (at most limit s)."""
    last, still, end = -1, 0.0, time.monotonic() + limit
    while time.monotonic() < end and still < 1.0:
        time.sleep(0.2)
        still = still + 0.2 if be.sent == last else 0.0
        last = be.sent
    return still >= 1.0


def test_tiny_data_frames_do_not_grow_what_waits_for_a_slow_client(procs):
    """What waits in sluice for a client is bounded by the stream's window
    (64 KiB of DATA): the window reopens only for DATA the client side has
    taken. The chunked framing sluice adds around each DATA frame (6 bytes
    for a one-byte frame) must not count as DATA taken: else each byte a
    slow client reads lets the backend send a DATA byte, 6 bytes more in
    sluice's memory, and what waits grows without bound. So here, once
    everything is full, reading N bytes may let in about N/6 DATA bytes,
    not N. (A small MSS keeps the kernel's buffers towards the client
    small, so that what the client reads is what sluice takes from its own
    memory.)"""
    be = RawTinyFrameBackend(total=64 << 20, limit=25)
    port = free_port()
    procs.sluice(h2_pool_config(port, be.address,
                                "    timeouts: {upstream_response: 30s}"), wait_ports=[port])
    c = socket.socket()
    try:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)
        c.connect(("127.0.0.1", port))
        c.sendall(b"GET /tiny HTTP/1.1\r\nHost: t\r\n\r\n")
        c.settimeout(0.2)
        assert wait_still(be, 12), "the backend never stalled"
        before, read, end = be.sent, 0, time.monotonic() + 3
        while time.monotonic() < end:          # about 100 KB/s
            try:
                read += len(c.recv(1024))
            except socket.timeout:
                pass
            time.sleep(0.01)
        time.sleep(0.5)
        let_in = be.sent - before
        assert read > 50000, read
        assert let_in < read / 3, (f"reading {read} bytes let the backend send {let_in} DATA "
                                   f"bytes (about {read // 6} of them were DATA)")
    finally:
        c.close()
        be.stop()


def test_head_response_keeps_the_backends_content_length(procs):
    """A HEAD answer says in Content-Length how long the GET's body would
    be, and has no body. sluice must pass the backend's Content-Length on,
    not replace it with 0 (what it writes for answers without a body)."""
    def serve(conn, sock, events):
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                assert dict(ev.headers)[":method"] == "HEAD"
                conn.send_headers(ev.stream_id, [(":status", "200"), ("content-length", "1234"),
                                                 ("x-b", "1")], end_stream=True)
                send(conn, sock)

    be = H2Backend(serve)
    port = free_port()
    procs.sluice(h2_pool_config(port, be.address), wait_ports=[port])
    try:
        got = http1_exchange(port, b"HEAD /f HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head = got.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200") and b"x-b: 1" in head, got
        assert b"content-length: 1234" in head, got
        assert not be.errors, be.errors
    finally:
        be.stop()


def test_a_head_at_the_listeners_field_limit_reaches_an_http2_backend(procs):
    """A client may send up to limits.max_headers (128) fields; sluice adds
    its own (X-Forwarded-*, Forwarded, X-Request-Id) before the head is
    turned into HTTP/2. The HTTP/2 side parsed that head into 128 slots, so
    such a request failed with 502 towards http2 pools only."""
    seen = []

    def serve(conn, sock, events):
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                seen.append(len([n for n, _ in ev.headers if n.startswith("x-h")]))
                conn.send_headers(ev.stream_id, [(":status", "200"), ("content-length", "0")],
                                  end_stream=True)
                send(conn, sock)

    be = H2Backend(serve)
    port = free_port()
    procs.sluice(h2_pool_config(port, be.address).replace(
        "    pool: app", "    limits: {max_headers: 128}\n    pool: app", 1), wait_ports=[port])
    try:
        fields = "".join(f"X-H{i}: {i}\r\n" for i in range(126))
        got = http1_exchange(port, f"GET / HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n"
                             .encode())
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
        assert seen == [126], seen
        assert not be.errors, be.errors
    finally:
        be.stop()
