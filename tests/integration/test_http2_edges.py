"""Edges of the HTTP/2 client side (proxy/h2.c, proto/h2_request.c): a
:path that is not origin-form, and clients that stop taking what they asked
for. Each test is the regression test of a bug found there."""
import socket
import threading
import time

from harness import free_port
from test_http2 import H2Client, config


def raw_request(c, headers, end=True):
    """A request head exactly as given (no defaults added)."""
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, headers, end_stream=end)
    c.flush()
    c.responses[sid] = {"headers": None, "body": b"", "ended": False, "reset": None}
    return sid


def test_path_in_absolute_form_cannot_override_the_authority(procs):
    """nghttp2 checks that :path is origin-form only when :scheme is http or
    https; with any other :scheme an absolute URI got through, and the
    HTTP/1.1 parser then took its host over :authority: the request was
    routed, and forwarded, as a host the client never named in :authority."""
    o1, o2 = procs.origin("b1"), procs.origin("b2")
    port = free_port()
    routes = "\n".join(["    routes:", "      - match: {host: admin.test}", "        pool: admin"])
    text = config(port, [o1], routes=routes) + "\n".join([
        "  - name: admin", "    backends:", f"      - {{name: b2, address: {o2.address}}}"]) + "\n"
    procs.sluice(text, wait_ports=[port])
    c = H2Client(port, validate=False)
    sid = raw_request(c, [(":method", "GET"), (":scheme", "foo"),
                          (":path", "http://admin.test/echo"), (":authority", "public.test")])
    r = c.wait([sid])[0]
    assert r["body"] != b"" or r["reset"] is not None, r
    assert r["headers"] is None or r["headers"][":status"] == "400", r
    assert b"b2" not in r["body"], r
    # Origin-form and OPTIONS * still work, whatever the scheme.
    sid = raw_request(c, [(":method", "GET"), (":scheme", "foo"), (":path", "/"),
                          (":authority", "public.test")])
    assert c.wait([sid])[0]["body"] == b"b1\n"
    sid = raw_request(c, [(":method", "OPTIONS"), (":scheme", "http"), (":path", "*"),
                          (":authority", "public.test")])
    assert c.wait([sid])[0]["headers"][":status"] != "400"
    c.close()


def test_a_response_the_client_never_takes_is_reset_after_client_idle(procs):
    """Once http.c has handed over the whole response it detaches and its
    timers stop; what is left waits on the client's window. A client that
    keeps that window shut while it keeps the connection busy (PINGs here)
    held the stream, its queues and a concurrency slot forever."""
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, [o], extra_listener="    timeouts: {client_idle: 1s}"),
                 wait_ports=[port])
    c = H2Client(port, window=1)
    c.sock.settimeout(0.2)
    sid = c.request("/bytes/1000")
    t0 = time.monotonic()
    while c.responses[sid]["reset"] is None and not c.closed and time.monotonic() - t0 < 6:
        c.conn.ping(b"keepbusy")
        c.flush()
        try:
            c.pump(ack=False)
        except socket.timeout:
            pass
    r = c.responses[sid]
    assert r["reset"] is not None or c.closed, (len(r["body"]), r["ended"])
    assert time.monotonic() - t0 < 4.5
    c.close()
    # A reader that takes its bytes is not affected.
    c = H2Client(port)
    assert c.get("/bytes/300000")["body"] == b"abcdefghijklmnopqrstuvwxyz" * 11538 + b"abcdefghijkl"
    c.close()



def test_a_client_that_reads_nothing_is_closed_after_client_idle(procs):
    """Every byte read counted as activity, so a client that stopped reading
    (sluice's socket full, frames waiting) but kept sending frames that cost
    it nothing (PRIORITY) kept the connection, with its reset streams and
    their queues, forever: the exchange's own timers had ended by then."""
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, [o], extra_listener="    timeouts: {client_idle: 1s}",
                        extra_pool="    timeouts: {upstream_response: 2s}"), wait_ports=[port])
    c = H2Client(port, window=2**31 - 1)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.conn.increment_flow_control_window(2**31 - 1 - 65535)
    c.flush()
    sid = c.request("/bytes/200000000")      # never read: sluice's socket fills up
    t0 = time.monotonic()
    closed = False
    while not closed and time.monotonic() - t0 < 6:
        try:
            c.conn.prioritize(sid, weight=16)
            c.flush()
        except OSError:
            closed = True                    # sluice closed (a reset, with our bytes unread)
        time.sleep(0.2)
    assert closed, "the connection is still open"
    assert time.monotonic() - t0 < 4
    c.close()
    # A client that reads is not affected.
    c = H2Client(port)
    assert len(c.get("/bytes/3000000")["body"]) == 3000000
    c.close()


class SlowReader:
    """A backend that takes one connection and reads it at about 30 KB/s
    through a small receive buffer and MSS (so that the kernel holds little
    of what sluice sends it); counts what it read."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.origin_name = "slow"
        self.read = 0
        self.reading = True       # False: holds the connection, reads nothing
        self.stop = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        c.settimeout(0.05)
        while not self.stop:
            if not self.reading:
                time.sleep(0.05)
                continue
            try:
                d = c.recv(512)
                if not d:
                    break
                self.read += len(d)
            except socket.timeout:
                pass
            time.sleep(0.015)
        c.close()


def test_tiny_data_frames_do_not_grow_what_waits_for_a_slow_backend(procs):
    """What a request body may have waiting in sluice is bounded by the
    stream's window (64 KiB of DATA): the window reopens only for DATA that
    has left sluice's buffer. The chunked framing sluice puts around each
    DATA frame of a body without content-length (6 bytes for a one-byte
    frame) must not count as DATA taken: else each byte the backend reads
    lets the client send another DATA byte, 6 bytes more in sluice's memory,
    and what waits grows without bound. So once everything is full, the
    backend reading N bytes may let in about N/6 DATA bytes, not N."""
    be = SlowReader()
    port = free_port()
    procs.sluice(config(port, [be], extra_pool="    timeouts: {upstream_response: 30s}"),
                 wait_ports=[port])
    c = H2Client(port)
    try:
        sid = c.request("/up", method="POST", end=False)
        c.sock.settimeout(0.05)
        sent, marks = 0, []
        end = time.monotonic() + 8
        while time.monotonic() < end:
            room = c.conn.local_flow_control_window(sid)
            for _ in range(min(room, 2000)):       # one-byte DATA frames
                c.conn.send_data(sid, b"x")
            sent += min(room, 2000)
            c.flush()
            if room < 2000:
                try:
                    c.pump()                       # WINDOW_UPDATEs
                except socket.timeout:
                    pass
            marks.append((time.monotonic(), sent, be.read))
        # From 4 s on everything is full (slower builds, ASan, take longer):
        # compare what came in with what left. About read / 6 is right;
        # counting the framing as DATA lets in about read.
        t0 = next(m for m in marks if m[0] >= marks[0][0] + 4)
        t1 = marks[-1]
        let_in, read = t1[1] - t0[1], t1[2] - t0[2]
        assert read > 30000, read
        assert let_in < read / 2, (f"the backend reading {read} bytes let the client send "
                                   f"{let_in} DATA bytes (about {read // 6} of them were DATA)")
    finally:
        be.stop = True
        c.close()
        be.sock.close()


def test_one_stalled_upload_does_not_stall_the_others(procs):
    """One stream's body that its backend does not take must not stop the
    bodies of the other streams on the connection: each stream's own window
    (64 KiB) bounds what waits in sluice for it, and the connection's window
    is as large as HTTP/2 allows (as NGINX sets it). With a connection window
    of one stream's size, the stalled stream held all of it, and a second
    upload waited for the first one's timeout."""
    stalled = SlowReader()
    stalled.reading = False                   # accepts, then never reads
    ok = procs.origin("ok")
    port = free_port()
    routes = ("    routes:\n"
              "      - {match: {path_prefix: /stall}, pool: stall}\n"
              "      - {match: {path_prefix: /upload}, pool: app}")
    text = config(port, [ok], routes=routes, extra_pool="    timeouts: {upstream_response: 30s}")
    text += ("  - name: stall\n    timeouts: {upstream_response: 30s}\n"
             f"    backends: [{{address: {stalled.address}}}]\n")
    procs.sluice(text, wait_ports=[port])
    c = H2Client(port)
    try:
        a = c.request("/stall", method="POST", end=False)
        c.sock.settimeout(0.05)
        chunk, idle_since = b"s" * 16384, None
        end = time.monotonic() + 10
        while time.monotonic() < end:          # until A's windows stay shut for 1 s
            room = min(c.conn.local_flow_control_window(a), c.conn.max_outbound_frame_size)
            if room > 0:
                c.conn.send_data(a, chunk[:room])
                c.flush()
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.0:
                break
            try:
                c.pump()
            except socket.timeout:
                pass
        assert idle_since, "stream A never stalled"
        c.sock.settimeout(5)
        t0 = time.monotonic()
        b = c.request("/upload", method="POST", body=b"u" * 20000)
        r = c.wait([b], timeout=5)[0]
        assert r["headers"] and r["headers"][":status"] == "200", r
        assert b'"body_length":20000' in r["body"].replace(b" ", b""), r["body"]
        assert time.monotonic() - t0 < 3, time.monotonic() - t0
    finally:
        stalled.stop = True
        c.close()
        stalled.sock.close()
