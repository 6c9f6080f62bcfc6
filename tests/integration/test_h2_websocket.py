"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT) through sluice: a
python3-h2 client sends `:method CONNECT`, `:protocol websocket`; sluice
routes it like a GET of its path and sends it to an HTTP/1.1 backend as a
WebSocket upgrade with a key of its own; the backend's 101 becomes the
stream's 200 and the stream carries the tunnel. WebSocket frames are
written here by hand (masked from the client, RFC 6455 5.3). Backends: a
python3-websockets echo server, and raw sockets scripted per test."""
import base64
import crypt
import hashlib
import os
import re
import socket
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from harness import WebSocketEcho, free_port, wait_for
from test_http_exchange_edges import ScriptedOrigin, read_head

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def ws_frame(opcode, payload):
    """A client's frame: FIN, the opcode, masked payload."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big") if n else b""
    return head + key + masked


def ws_parse(buf):
    """Whole unmasked frames at the start of buf: ([(opcode, payload)], rest)."""
    frames = []
    while len(buf) >= 2:
        n, at = buf[1] & 0x7F, 2
        assert not buf[1] & 0x80, "a server's frames are not masked"
        if n == 126:
            if len(buf) < 4:
                break
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            break
        frames.append((buf[0] & 0x0F, buf[at:at + n]))
        buf = buf[at + n:]
    return frames, buf


class H2Client:
    """A python3-h2 client connection to sluice (prior knowledge) that
    remembers what came: the server's settings, heads, DATA and ends."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.conn.initiate_connection()
        self.settings, self.heads, self.data, self.ends = {}, {}, {}, {}
        self.flush()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.s.sendall(out)

    def pump(self, until, timeout=10):
        deadline = time.monotonic() + timeout
        self.s.settimeout(0.2)
        while not until() and time.monotonic() < deadline:
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            if not data:
                self.ends.setdefault("conn", "closed")
                break
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    self.settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
                elif isinstance(ev, h2.events.ResponseReceived):
                    self.heads[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ends[ev.stream_id] = "end"
                elif isinstance(ev, h2.events.StreamReset):
                    self.ends[ev.stream_id] = "reset"
            self.flush()
        return until()

    def connect(self, sid, path, extra=(), authority="t"):
        """An extended CONNECT for a WebSocket on stream sid; waits for the head."""
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                     (":scheme", "http"), (":path", path), (":authority", authority),
                                     ("sec-websocket-version", "13"), *extra])
        self.flush()
        self.pump(lambda: sid in self.heads or sid in self.ends)
        return self.heads.get(sid)

    def send(self, sid, data, end=False):
        """All of data as DATA, as the stream's window lets it go."""
        while data:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                assert self.pump(lambda: self.conn.local_flow_control_window(sid) > 0), "window shut"
                continue
            self.conn.send_data(sid, data[:room])
            data = data[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def frames(self, sid, count, timeout=10):
        """count WebSocket frames from the stream's DATA."""
        got = []

        def enough():
            frames, self.data[sid] = ws_parse(self.data.get(sid, b""))
            got.extend(frames)
            return len(got) >= count or sid in self.ends
        self.pump(enough, timeout)
        return got

    def close(self):
        self.s.close()


def WsServer(websockets):
    """A python3-websockets echo server offering the subprotocol "chat",
    recording each handshake's path and headers."""
    return WebSocketEcho(websockets, subprotocols=["chat"], ping_interval=None, max_size=None,
                         compression=None)


class RawWsBackend(ScriptedOrigin):
    """A WebSocket backend on a raw socket: it answers each upgrade as
    answer(head) says (default: a correct 101), then runs after(conn) and
    records what it saw: heads, and "eof"/"reset" when the peer closed."""

    def __init__(self, answer=None, after=None):
        self.heads, self.closes = [], []
        self.answer = answer or (lambda head: b"HTTP/1.1 101 Switching Protocols\r\n"
                                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                 b"Sec-WebSocket-Accept: " + accept_for(key_of(head)) + b"\r\n\r\n")
        self.after = after or self.wait_for_close
        super().__init__(self._script)

    def _script(self, c, i):
        c.settimeout(20)
        head, _, rest = read_head(c).partition(b"\r\n\r\n")
        self.heads.append(head)
        answer = self.answer(head)
        c.sendall(answer)
        if answer.startswith(b"HTTP/1.1 101"):
            self.after(c)
        else:
            c.close()             # one answer per connection: no keep-alive here

    def wait_for_close(self, c):
        try:
            while c.recv(65536):
                pass
            self.closes.append("eof")
        except ConnectionResetError:
            self.closes.append("reset")
        except socket.timeout:
            self.closes.append("timeout")


def key_of(head):
    return re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head).group(1)


def config(port, backend, extra_listener="", users_file=None, h2_backend=None):
    lines = ["workers: 1", "log: {level: info, access: stdout}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    http2: true", "    pool: ws"]
    if extra_listener:
        lines.append(extra_listener)
    lines += ["    routes:",
              "      - {match: {path: /closed}, respond: {status: 403, body: \"closed\\n\"}}"]
    if users_file:
        lines.append(f"      - {{match: {{path_prefix: /private/}}, pool: ws, "
                     f"auth: {{type: basic, realm: r, users_file: {users_file}}}}}")
    if h2_backend:
        lines.append("      - {match: {path_prefix: /h2/}, pool: h2pool}")
    lines += ["      - {match: {path_prefix: /}, pool: ws}",
              "pools:", "  - name: ws", "    backends:", f"      - {{name: b1, address: {backend}}}"]
    if h2_backend:
        lines += ["  - name: h2pool", "    http2: true", "    backends:",
                  f"      - {{name: g1, address: {h2_backend}}}"]
    return "\n".join(lines) + "\n"


def test_websocket_over_http2_to_a_websocket_server(procs):
    """The whole exchange against a real WebSocket server: the client sees
    SETTINGS_ENABLE_CONNECT_PROTOCOL=1; its CONNECT reaches the server as
    an upgrade of the same path with a valid key (the server checks it) and
    the client's version and subprotocol; the 200 carries the subprotocol
    chosen and no Sec-WebSocket-Accept; messages go both ways, one larger
    than the stream windows (flow control on both sides); the client's
    Close gets the server's, and the server's close ends the stream. A
    second stream on the same connection is a plain request."""
    websockets = pytest.importorskip("websockets")
    srv = WsServer(websockets)
    port = free_port()
    try:
        s = procs.sluice(config(port, srv.address), wait_ports=[port])
        c = H2Client(port)
        assert c.pump(lambda: c.settings)
        assert c.settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1, c.settings
        head = c.connect(1, "/chat?room=7", [("sec-websocket-protocol", "chat, superchat"),
                                             ("x-trace", "abc")])
        assert head and head[":status"] == "200", (head, c.ends)
        assert head.get("sec-websocket-protocol") == "chat", head
        assert "sec-websocket-accept" not in head and "upgrade" not in head, head
        path, hs = srv.handshakes[0]
        assert path == "/chat?room=7", path
        assert hs["Upgrade"].lower() == "websocket" and "upgrade" in hs["Connection"].lower(), hs
        assert hs["Sec-WebSocket-Version"] == "13" and len(hs["Sec-WebSocket-Key"]) == 24, hs
        assert hs["X-Trace"] == "abc" and hs["X-Forwarded-For"] == "127.0.0.1", hs

        c.send(1, ws_frame(0x1, b"hello"))
        assert c.frames(1, 1) == [(0x1, b"hello")]
        big = os.urandom(300000)
        c.send(1, ws_frame(0x2, big))
        assert c.frames(1, 1, timeout=20) == [(0x2, big)]

        c.send(1, ws_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
        frames = c.frames(1, 1)
        assert frames and frames[0][0] == 0x8 and frames[0][1][:2] == (1000).to_bytes(2, "big"), frames
        assert c.pump(lambda: 1 in c.ends), c.ends
        assert c.ends[1] in ("end", "reset"), c.ends

        c.conn.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":path", "/x"),
                                (":authority", "t")], end_stream=True)
        c.flush()
        assert c.pump(lambda: 3 in c.heads), c.ends
        assert c.heads[3][":status"] in ("404", "426", "400"), c.heads   # not a WebSocket request
        c.close()
        wait_for(lambda: re.search(r'"GET /chat\?room=7 HTTP/2.0" 101', s.stdout()),
                 what="the tunnel's access line")
    finally:
        srv.stop()


@pytest.mark.parametrize("early", [False, True], ids=["after_200", "before_200"])
def test_half_close_and_the_backend_close(procs, early):
    """END_STREAM from the client is the tunnel's half-close: the backend
    reads EOF and may still send; what it sends reaches the client, and
    its close then ends the stream (END_STREAM). Also when the client sent
    its bytes and END_STREAM before the 200 came (they wait in sluice and
    follow the upgrade)."""
    def after(c):
        got = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        count = str(len(got)).encode()
        c.sendall(b"\x82\x05after" + bytes([0x81, len(count)]) + count)
        c.close()

    be = RawWsBackend(after=after)
    port = free_port()
    try:
        procs.sluice(config(port, be.address), wait_ports=[port])
        c = H2Client(port)
        if early:
            c.conn.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"),
                                    (":scheme", "http"), (":path", "/ws"), (":authority", "t"),
                                    ("sec-websocket-version", "13")])
            c.send(1, b"0123456789", end=True)
            assert c.pump(lambda: 1 in c.heads) and c.heads[1][":status"] == "200", c.ends
        else:
            assert c.connect(1, "/ws")[":status"] == "200"
            c.send(1, b"0123456789", end=True)
        frames = c.frames(1, 2)
        assert frames == [(0x2, b"after"), (0x1, b"10")], frames
        assert c.pump(lambda: 1 in c.ends) and c.ends[1] == "end", c.ends
        c.close()
    finally:
        be.stop()


def test_client_reset_closes_the_backend_connection(procs):
    """RST_STREAM from the client ends the tunnel at once: the backend's
    connection is closed (it reads EOF or a reset), the other streams of the
    connection carry on."""
    be = RawWsBackend()
    port = free_port()
    try:
        s = procs.sluice(config(port, be.address), wait_ports=[port])
        c = H2Client(port)
        assert c.connect(1, "/ws")[":status"] == "200"
        c.send(1, b"some tunnel bytes")
        time.sleep(0.2)
        assert not be.closes
        c.conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        wait_for(lambda: be.closes, timeout=10, what="the backend connection to close")
        assert be.closes[0] in ("eof", "reset"), be.closes
        assert c.connect(3, "/ws")[":status"] == "200"       # the connection carries on
        c.close()
        wait_for(lambda: "end=client_reset" in s.stdout(), what="the access line of the reset")
    finally:
        be.stop()


def test_backend_reset_resets_the_stream(procs):
    """A backend that resets its connection mid-tunnel: the stream is reset
    (RST_STREAM), not ended as if the tunnel had closed cleanly."""
    def after(c):
        c.recv(100)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()

    be = RawWsBackend(after=after)
    port = free_port()
    try:
        procs.sluice(config(port, be.address), wait_ports=[port])
        c = H2Client(port)
        assert c.connect(1, "/ws")[":status"] == "200"
        c.send(1, b"x")
        assert c.pump(lambda: 1 in c.ends), c.ends
        assert c.ends[1] == "reset", c.ends
        c.close()
    finally:
        be.stop()


def test_tunnel_idle_timeout_ends_the_stream_and_the_backend_connection(procs):
    """A tunnel with no bytes either way for tunnel_idle is closed: the
    client's stream ends and the backend's connection is closed. Traffic
    before that keeps it open."""
    be = RawWsBackend()
    port = free_port()
    try:
        procs.sluice(config(port, be.address, extra_listener="    timeouts: {tunnel_idle: 1s}"),
                     wait_ports=[port])
        c = H2Client(port)
        assert c.connect(1, "/ws")[":status"] == "200"
        c.send(1, b"ping")
        assert not c.pump(lambda: 1 in c.ends, timeout=0.5)
        assert c.pump(lambda: 1 in c.ends, timeout=10), c.ends
        wait_for(lambda: be.closes, timeout=10, what="the backend connection to close")
        assert be.closes[0] == "eof", be.closes
        c.close()
    finally:
        be.stop()


def test_refusals_routes_auth_and_a_bad_handshake(procs, tmp_path):
    """The CONNECT is routed like a GET of its path, and every refusal is
    an ordinary answer on the stream: a backend that does not upgrade (404)
    is relayed as it answered; a `respond` route and auth apply to the
    path (403; 401 without credentials, a tunnel with them); a 101 whose
    Sec-WebSocket-Accept does not answer sluice's key is a 502 (the client,
    which sent no key, could not check it); an `http2` pool is 501; a
    protocol other than websocket is 501."""
    users = tmp_path / "users"
    users.write_text("ann:" + crypt.crypt("pw", crypt.mksalt(crypt.METHOD_SHA512)) + "\n")

    def answer(head):
        line = head.split(b"\r\n")[0]
        if b" /missing" in line:
            return (b"HTTP/1.1 404 Not Found\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
                    b"no room\n")
        if b" /badkey" in line:
            return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(b"other") + b"\r\n\r\n")
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_for(key_of(head)) + b"\r\n\r\n")

    be = RawWsBackend(answer=answer)
    port = free_port()
    try:
        s = procs.sluice(config(port, be.address, users_file=users, h2_backend="127.0.0.1:1"),
                         wait_ports=[port])
        c = H2Client(port)
        assert c.connect(1, "/missing")[":status"] == "404"
        assert c.pump(lambda: 1 in c.ends) and c.data[1] == b"no room\n", c.data
        assert c.connect(3, "/closed")[":status"] == "403"
        assert c.connect(5, "/private/room")[":status"] == "401"
        auth = "Basic " + base64.b64encode(b"ann:pw").decode()
        h = c.connect(7, "/private/room", [("authorization", auth)])
        assert h and h[":status"] == "200", (h, c.ends)
        assert c.connect(9, "/badkey")[":status"] == "502"
        assert c.connect(11, "/h2/x")[":status"] == "501"
        c.conn.send_headers(13, [(":method", "CONNECT"), (":protocol", "connect-udp"),
                                 (":scheme", "http"), (":path", "/"), (":authority", "t")])
        c.flush()
        c.pump(lambda: 13 in c.heads or 13 in c.ends)
        assert c.heads.get(13, {}).get(":status") == "501", (c.heads, c.ends)
        # The backend saw only what routes and auth let through.
        lines = [h.split(b"\r\n")[0] for h in be.heads]
        assert lines == [b"GET /missing HTTP/1.1", b"GET /private/room HTTP/1.1",
                         b"GET /badkey HTTP/1.1"], lines
        assert len(s.log_lines("bad_response")) == 1, s.stderr()[-2000:]
        c.close()
    finally:
        be.stop()
