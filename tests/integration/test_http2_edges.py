"""Edges of the HTTP/2 client side (proxy/h2.c, proto/h2_request.c): a
:path that is not origin-form, and clients that stop taking what they asked
for. Each test is the regression test of a bug found there."""
import socket
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
