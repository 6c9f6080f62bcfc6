"""Limits of the HTTP exchange (src/proxy/http.c) seen from the client's
side, with byte-exact hand-written origins on loopback: how long a client
that does not read its response is kept, interim (1xx) responses to
HTTP/1.0 clients, a retry's backoff, and the client bytes that follow an
Upgrade request. Each test is the regression test of a bug found there."""
import socket
import threading
import time


from harness import free_port
from test_http2 import H2Client
from test_http_exchange_edges import ScriptedOrigin, read_head, read_response


def config(port, backends, listener_extra="", pool_extra="", http2=False):
    lines = ["workers: 1", "drain_timeout: 5s", "log: {level: debug, access: stdout}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app"]
    if http2:
        lines.append("    http2: true")
    if listener_extra:
        lines.append(listener_extra.rstrip("\n"))
    lines += ["pools:", "  - name: app", "    balance: round_robin"]
    if pool_extra:
        lines.append(pool_extra.rstrip("\n"))
    lines.append("    backends:")
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


# ---- 1. a client that does not read its response ----

BIG = 256 * 1024 * 1024      # far more than loopback socket buffers hold


def unread_response_origin(ended):
    """An origin that answers after a pause (sluice's first timer has fired
    by then, with nothing yet to send to the client) with a huge body, and
    notes in ended[] when its connection failed: sluice gave up on the
    exchange."""
    def script(c, i):
        read_head(c)
        t0 = time.monotonic()
        time.sleep(0.4)
        c.settimeout(20)
        chunk = b"x" * 65536
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        try:
            sent = 0
            while sent < BIG and time.monotonic() - t0 < 20:
                c.sendall(chunk)
                sent += len(chunk)
        except OSError:
            ended.append(time.monotonic() - t0)
    return script


LIMITS = ("    timeouts: {client_idle: 1s}",
          "    timeouts: {connect: 1s, upstream_response: 8s}")


def test_client_that_reads_nothing_is_closed_after_client_idle(procs):
    """An HTTP/1.1 client that reads none of a large response must be cut
    off about client_idle (1 s here) after sluice's writes to it stopped
    making progress, not after upstream_response (8 s): client_idle is the
    documented time a client may take to read a response, and a stuck
    reader holds a backend connection and two buffers meanwhile."""
    ended = []
    o = ScriptedOrigin(unread_response_origin(ended))
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)], *LIMITS), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            deadline = time.monotonic() + 12
            while not ended and time.monotonic() < deadline:
                time.sleep(0.05)
        assert ended, "sluice never gave up on the client"
        assert ended[0] < 4.0, ended      # 0.4 s pause + buffers filling + 1 s; not 8 s
    finally:
        o.stop()


def test_h2_stream_that_reads_nothing_is_closed_after_client_idle(procs):
    """The same for an HTTP/2 stream (the same exchange code runs it): a
    client that reads nothing of a large response has its stream ended
    about client_idle after its writes stopped, not after upstream_response."""
    ended = []
    o = ScriptedOrigin(unread_response_origin(ended))
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)], *LIMITS, http2=True), wait_ports=[port])
        cl = H2Client(port)
        try:
            cl.request("/big")
            deadline = time.monotonic() + 12
            while not ended and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            cl.sock.close()
        assert ended, "sluice never gave up on the stream"
        assert ended[0] < 4.0, ended
    finally:
        o.stop()


def test_client_that_reads_nothing_is_not_a_backend_timeout(procs):
    """With upstream_response shorter than client_idle (the defaults: 30 s
    and 60 s), a client that reads nothing stops sluice reading from the
    backend too (its buffer is full): that silence is the client's doing.
    The client still gets its client_idle (2 s here), and the backend is not
    timed out (event=upstream_timeout) and counted as failed for it."""
    ended = []
    o = ScriptedOrigin(unread_response_origin(ended))
    port = free_port()
    try:
        s_ = procs.sluice(config(port, [("b", o.address)], "    timeouts: {client_idle: 2s}",
                                 "    timeouts: {connect: 1s, upstream_response: 1s}"),
                          wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            deadline = time.monotonic() + 12
            while not ended and time.monotonic() < deadline:
                time.sleep(0.05)
        assert ended, "sluice never gave up on the client"
        assert 2.2 <= ended[0] < 5.0, ended
        assert not s_.log_lines("upstream_timeout"), s_.log_lines("upstream_timeout")
    finally:
        o.stop()


# ---- 2. interim responses and HTTP/1.0 clients ----

INTERIM = (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
           b"HTTP/1.1 100 Continue\r\n\r\n")


def interim_origin():
    def script(c, i):
        data = b""
        while True:
            data = read_head(c, data)
            _, _, data = data.partition(b"\r\n\r\n")
            c.sendall(INTERIM + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return ScriptedOrigin(script)


def read_until_close(s, limit=5):
    s.settimeout(limit)
    got = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        d = s.recv(65536)
        if not d:
            break
        got += d
    return got


def test_no_interim_response_reaches_an_http10_client(procs):
    """RFC 9110 15.2: a server must not send a 1xx response to an HTTP/1.0
    client, which cannot tell it from the final answer. A backend's 103
    and 100 are dropped for such a client, and its final 200 still arrives;
    an HTTP/1.1 client still gets the interim responses."""
    o = interim_origin()
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /old HTTP/1.0\r\nHost: t\r\n\r\n")
            got = read_until_close(s)
        assert got.startswith(b"HTTP/1.1 200 "), got[:200]
        assert b" 103 " not in got and b" 100 " not in got, got[:200]
        assert got.endswith(b"\r\n\r\nok"), got[-50:]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /new HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            got = read_until_close(s)
        assert got.startswith(b"HTTP/1.1 103 "), got[:200]
        assert b"HTTP/1.1 200 " in got and got.endswith(b"ok"), got[:300]
    finally:
        o.stop()


def test_101_to_an_http10_client_is_a_bad_gateway(procs):
    """An HTTP/1.0 request cannot ask for an Upgrade (it needs HTTP/1.1), so
    a backend's 101 to one is a broken answer: the client gets 502, not a
    tunnel it never asked for."""
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
            s.sendall(b"GET /ws HTTP/1.0\r\nHost: t\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\n\r\n")
            got = read_until_close(s)
        assert got.startswith(b"HTTP/1.1 502 "), got[:200]
        assert b"TUNNEL" not in got
    finally:
        o.stop()


# ---- 3. a retry's backoff ----

def put_with_a_retry(procs, script, backoff):
    """A 5-byte PUT through sluice (client_body 300ms) to two scripted
    origins a and b, retried once on a reset after backoff: (status, body)."""
    a, b = ScriptedOrigin(script), ScriptedOrigin(script)
    port = free_port()
    pool = ("    timeouts: {connect: 1s, upstream_response: 10s}\n"
            "    retries: {attempts: 1, retry_on: [reset], backoff: %s}\n"
            "    health_check: {type: tcp, interval: 60s}" % backoff)
    try:
        procs.sluice(config(port, [("a", a.address), ("b", b.address)],
                            "    timeouts: {client_body: 300ms}", pool), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=8) as s:
            s.sendall(b"PUT /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
            st, _, body = read_response(s, timeout=8)
        return st, body
    finally:
        a.stop()
        b.stop()


def test_retry_waits_its_whole_backoff(procs):
    """The first try's backend resets after taking a whole POST (replayable
    by its Content-Length); the retry must wait its backoff (base 2 s, with
    jitter at least 1 s) even though the client-body deadline (300 ms) falls
    earlier: the client owes nothing (its body is whole in sluice's buffer),
    so that deadline must neither start the retry early nor fail it."""
    lock = threading.Lock()
    seen = {"n": 0}
    times = {}

    def script(c, i):
        data = read_head(c)
        with lock:
            n = seen["n"]
            seen["n"] += 1
        if n == 0:
            while not data.endswith(b"hello"):      # the whole request, then a reset
                d = c.recv(65536)
                if not d:
                    return
                data += d
            times["reset"] = time.monotonic()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()
            return
        times["retry"] = time.monotonic()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        time.sleep(0.5)

    st, body = put_with_a_retry(procs, script, "2s")
    assert (st, body) == (200, b"ok"), (st, body, times)
    gap = times["retry"] - times["reset"]
    assert gap >= 0.9, gap


def test_retry_after_a_slow_try_is_not_a_client_timeout(procs):
    """The same without backoff, after a first try that took longer than
    client_body (the backend stalls 0.6 s, then resets): the retry rewinds
    the body, which lies whole in sluice's buffer, and must be sent; the
    client's body deadline counts from the retry's start, not from its last
    read long ago, which answered 408 to a client that owed nothing."""
    lock = threading.Lock()
    seen = {"n": 0}

    def script(c, i):
        read_head(c)
        with lock:
            n = seen["n"]
            seen["n"] += 1
        if n == 0:
            time.sleep(0.6)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()
            return
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        time.sleep(0.5)

    st, body = put_with_a_retry(procs, script, "0s")
    assert (st, body) == (200, b"ok"), (st, body)


# ---- 4. client bytes after an Upgrade request ----

def test_upgrade_with_a_large_head_carries_every_early_client_byte(procs):
    """A WebSocket upgrade whose head (20 KB) outgrew a pool buffer, with
    40 KB of frame bytes sent right behind it: all of those bytes were read
    with the head, and all must reach the backend once the tunnel is up, in
    order, not the first 16 KiB of them (one pool buffer) and no more."""
    payload = bytes(range(256)) * 160           # 40,960 bytes, position-checked
    got = []

    def script(c, i):
        data = read_head(c)
        _, _, rest = data.partition(b"\r\n\r\n")
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n")
        c.settimeout(1.5)
        end = time.monotonic() + 5
        try:
            while len(rest) < len(payload) and time.monotonic() < end:
                d = c.recv(65536)
                if not d:
                    break
                rest += d
        except socket.timeout:
            pass
        got.append(rest)
        time.sleep(0.5)

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n" + payload)
            head = read_head(s)
            assert head.startswith(b"HTTP/1.1 101 "), head[:80]
            end = time.monotonic() + 8
            while not got and time.monotonic() < end:
                time.sleep(0.05)
        assert got, "the backend saw no tunnel"
        assert len(got[0]) == len(payload) and got[0] == payload, len(got[0])
    finally:
        o.stop()
