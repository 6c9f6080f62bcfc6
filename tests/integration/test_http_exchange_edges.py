"""Edges of the HTTP/1.1 exchange (src/proxy/http.c) that need byte-exact
hand-written origins and clients on loopback: short sends, bytes past a
response, early answers, a 101 with tunnel bytes behind it, a close with a
pipelined request unread. Each test is the regression test of a bug found
there."""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from harness import AcceptLoop, free_port

BUF = 16384      # core/buffer.h BUF_SIZE_DEFAULT: one read from a backend


def config(port, backends, pool_extra="", listener_extra=""):
    lines = ["workers: 1", "drain_timeout: 5s", "log: {level: debug, access: stdout}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app"]
    if listener_extra:
        lines.append(listener_extra.rstrip("\n"))
    lines += ["pools:", "  - name: app", "    balance: round_robin",
              "    timeouts: {connect: 500ms, upstream_response: 3s}"]
    if pool_extra:
        lines.append(pool_extra.rstrip("\n"))
    lines.append("    backends:")
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def read_head(s, data=b""):
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        if not d:
            raise EOFError(data)
        data += d
    return data


def next_head(c, data, seen):
    """The next request head on c (after the bytes in data), its request
    line appended to seen: (head, the bytes read past it)."""
    data = read_head(c, data)
    head, _, data = data.partition(b"\r\n\r\n")
    seen.append(head.split(b"\r\n")[0])
    return head, data


def read_response(s, timeout=5):
    """One Content-Length response from s: (status, headers dict, body)."""
    s.settimeout(timeout)
    data = read_head(s)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    return int(lines[0].split()[1]), hdrs, rest[:n]


class ScriptedOrigin(AcceptLoop):
    """Each accepted connection is served on its own thread by
    script(conn, index_of_connection); conn reads are bounded in time."""

    def __init__(self, script):
        self.script = script
        self.nconn = 0
        super().__init__(self._start)

    def _start(self, c):
        i = self.nconn
        self.nconn += 1
        c.settimeout(5)

        def run():
            try:
                self.script(c, i)
            except (OSError, EOFError):
                pass
        threading.Thread(target=run, daemon=True).start()


# ---- (c) upstream connection reuse ----

def test_leftover_response_bytes_never_reach_the_next_request(procs):
    """The backend sends more than its response's framing says, and the
    extra bytes are still unread in the socket when the exchange ends (here:
    the response fills exactly one read buffer). The connection must not go
    back to the idle pool: the next request would get the extra bytes as its
    answer (a response sent to the wrong request)."""
    body_len = BUF - len(b"HTTP/1.1 200 OK\r\nContent-Length: 00000\r\n\r\n")
    first = b"HTTP/1.1 200 OK\r\nContent-Length: %05d\r\n\r\n" % body_len + b"a" * body_len
    assert len(first) == BUF
    stale = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTALE"

    def script(c, i):
        n = 0
        data = b""
        while True:
            data = read_head(c, data)
            _, _, data = data.partition(b"\r\n\r\n")
            n += 1
            if i == 0 and n == 1:
                c.sendall(first + stale)
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nFRESH")

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
            st, _, body = read_response(s)
            assert st == 200 and body == b"a" * body_len
            time.sleep(0.1)
            s.sendall(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
            st, _, body = read_response(s)
            assert body == b"FRESH", body
    finally:
        o.stop()


# ---- (d) Upgrade ----

def test_bytes_after_a_101_fill_a_buffer_and_all_reach_the_client(procs):
    """The backend's 101 and its first tunnel bytes arrive in one read that
    fills the buffer. The rewritten 101 head (it gains the route's
    set_response_headers) and those bytes no longer fit in one buffer
    together: none may be lost."""
    data = bytes(range(256)) * 100          # 25,600 bytes, position-checked
    head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n")

    def script(c, i):
        read_head(c)
        # One write, after a pause long enough for sluice to be waiting:
        # it reads the 101 and the first tunnel bytes in one full read.
        c.sendall(head + data)
        time.sleep(3)

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        routes = ("    routes:\n      - match: {path_prefix: /}\n        pool: app\n"
                  "        set_response_headers: {x-added-by-the-route: yes-it-was-added}\n")
        procs.sluice(config(port, [("b", o.address)], listener_extra=routes), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\n\r\n")
            got = read_head(s)
            assert got.startswith(b"HTTP/1.1 101 "), got[:80]
            _, _, got = got.partition(b"\r\n\r\n")
            s.settimeout(1.5)
            try:
                while len(got) < len(data):
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
            except socket.timeout:
                pass
            assert len(got) == len(data) and got == data, (len(got), len(data))
    finally:
        o.stop()


# ---- (a) request body forwarding ----

SHORT_SEND_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

/* send() to the port in SHIM_PORT takes at most SHIM_CAP bytes a call: the
 * short writes a kernel makes when a socket's send buffer is nearly full,
 * made every time instead of by chance. */
ssize_t send(int fd, const void *p, size_t n, int flags)
{
    static ssize_t (*real)(int, const void *, size_t, int);
    static int port = -1;
    static size_t cap;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    if (port < 0) {
        const char *s = getenv("SHIM_PORT"), *c = getenv("SHIM_CAP");
        port = s ? atoi(s) : 0;
        cap = c ? (size_t)atoi(c) : 1000;
    }
    if (n > cap && getpeername(fd, (struct sockaddr *)&a, &len) == 0 &&
        a.sin_family == AF_INET && ntohs(a.sin_port) == port)
        n = cap;
    return real(fd, p, n, flags);
}
"""


def short_send_env(tmp_path, port, cap):
    """An environment for sluice in which its sends to port are short."""
    cc = shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler for the short-send shim")
    src, lib = tmp_path / "shim.c", tmp_path / "shim.so"
    src.write_text(SHORT_SEND_SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
                   check=True, timeout=60)
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(lib)
    env["SHIM_PORT"] = str(port)
    env["SHIM_CAP"] = str(cap)
    # An ASan build wants its runtime first; the shim only wraps send().
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    return env


def test_short_send_of_a_bodys_last_bytes_sends_the_rest(procs, tmp_path):
    """A Content-Length body whose last piece the backend socket takes only
    in part: the rest must still be sent. Marking the body sent at the
    short write leaves the backend waiting for bytes that never come, and
    the unsent bytes are then parsed as the client's next request (body
    bytes smuggled into a request)."""
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
    body = b"A" * 1000 + smuggled + b"B" * 500
    seen = []

    def script(c, i):
        data = b""
        while True:
            head, data = next_head(c, data, seen)
            n = 0
            for l in head.split(b"\r\n")[1:]:
                k, _, v = l.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v)
            c.settimeout(1.5)
            try:
                while len(data) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    data += d
            except socket.timeout:
                pass
            got, data = data[:n], data[n:]
            reply = b"got %d" % len(got)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply) + reply)

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port],
                     env=short_send_env(tmp_path, o.port, 1000))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body)
            st, _, reply = read_response(s)
            time.sleep(0.3)
        assert ((st, reply), seen) == ((200, b"got %d" % len(body)), [b"PUT /upload HTTP/1.1"])
    finally:
        o.stop()


# ---- (a) the replay after a failure ----

def test_retry_after_a_short_chunked_send_replays_the_same_bytes(procs, tmp_path):
    """A chunked PUT (replayable) whose body the first backend's socket took
    only in part, after which that backend resets: a retry on the second
    backend must send the request as the client sent it, head first, or
    not be made (502). The unsent tail of the chunk was kept in the buffer
    that holds the head for a retry, so the retry sent that tail where the
    head belongs."""
    payload = b"p" * 1500
    body = b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
    req = b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    good_got = []

    def bad_script(c, i):
        c.settimeout(0.4)
        try:
            while c.recv(65536):
                pass
        except socket.timeout:
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()

    def good_script(c, i):
        data = read_head(c)
        good_got.append(data.split(b"\r\n")[0])
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        time.sleep(0.5)

    bad, good = ScriptedOrigin(bad_script), ScriptedOrigin(good_script)
    port = free_port()
    retries = ("    retries: {attempts: 1, retry_on: [reset], backoff: 0s}\n"
               "    health_check: {type: tcp, interval: 60s}")
    try:
        procs.sluice(config(port, [("bad", bad.address), ("good", good.address)], retries),
                     wait_ports=[port], env=short_send_env(tmp_path, bad.port, 1000))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(req)
            st, _, reply = read_response(s)
        assert (st, good_got) in ((200, [b"PUT /up HTTP/1.1"]), (502, [])), (st, reply, good_got)
    finally:
        bad.stop()
        good.stop()


def test_a_timeout_on_a_reused_connection_is_not_a_stale_connection(procs):
    """A backend that takes a request on a kept-alive connection and never
    answers is not a keep-alive connection that the backend had closed:
    with no retry policy the client gets its 504 after upstream_response,
    and the backend gets the request once, not again on a fresh connection
    (twice the wait, a GET sent twice, and the hang not counted as the
    backend's failure)."""
    seen = []

    def script(c, i):
        data = b""
        while True:
            head, data = next_head(c, data, seen)
            if b"/hang" in head:
                time.sleep(4)
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]).replace("upstream_response: 3s",
                                                               "upstream_response: 1s"),
                     wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s)[0] == 200
            t0 = time.monotonic()
            s.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
            st = read_response(s)[0]
            took = time.monotonic() - t0
        assert (st, seen) == (504, [b"GET /1 HTTP/1.1", b"GET /hang HTTP/1.1"]), (st, seen)
        assert took < 1.8, took
    finally:
        o.stop()


# ---- (e) error paths ----

def test_an_early_answer_is_logged_and_counted_once(procs):
    """The backend answers before taking the whole body (an early 413): the
    exchange ends with the client's body unread, and sluice closes with a
    linger. Its access line (and metrics sample) must be written once, not
    once by exchange_done and again by the lingering close. The second time
    it reads the request head from a client buffer exchange_done already
    freed (a head larger than a pool buffer is in a malloc'd one)."""
    def script(c, i):
        read_head(c)
        c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig")
        time.sleep(2)

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        s_ = procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nUser-Agent: " + b"u" * 20000 +
                      b"\r\nContent-Length: 100000\r\n\r\nxxxx")
            st, _, _ = read_response(s)
            assert st == 413
            time.sleep(0.5)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "/early" not in s_.stdout():
            time.sleep(0.05)
        time.sleep(0.3)
        lines = [l for l in s_.stdout().splitlines() if "/early" in l]
        assert len(lines) == 1, lines
    finally:
        o.stop()


# ---- (b) pipelining ----

def test_close_delimited_answer_survives_a_pipelined_request(procs):
    """The backend's answer ends with its connection (no Content-Length), so
    sluice closes the client connection after it. The client had already
    sent its next request, which sluice never read: a plain close() with
    unread bytes resets the connection and throws away the answer's tail
    still in the send buffer. The whole answer must arrive."""
    size = 600 * 1024

    def script(c, i):
        read_head(c)
        time.sleep(0.5)                      # the client's next request is in by then
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: x/y\r\n\r\n" + b"z" * size)
        c.close()

    o = ScriptedOrigin(script)
    port = free_port()
    try:
        procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.1)
            s.sendall(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(1.0)                  # a slow reader: the tail waits in sluice's kernel
            got = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
            except OSError as e:
                got += b"<%s>" % type(e).__name__.encode()
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert len(body) == size and body == b"z" * size, (len(body), body[-40:])
    finally:
        o.stop()


# ---- the last bytes of a Connection: close answer ----

def client_segments(port, request, seconds=2.0):
    """Send request on a new connection to port and read to EOF, capturing
    on lo (AF_PACKET; skip without CAP_NET_RAW) the TCP segments sent from
    port: [(flags, payload length)], and the bytes read."""
    try:
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    except PermissionError:
        pytest.skip("capturing on lo needs CAP_NET_RAW")
    cap.bind(("lo", 0))
    cap.settimeout(0.2)
    segs, got = [], b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        local = c.getsockname()[1]
        c.sendall(request)
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            pkt, addr = cap.recvfrom(65535)
        except socket.timeout:
            break
        if addr[2] == socket.PACKET_OUTGOING or pkt[14 + 9] != 6:
            continue                      # each loopback packet is seen twice; TCP only
        ip = pkt[14:]
        tcp = ip[(ip[0] & 15) * 4:]
        if (int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")) == (port, local):
            segs.append((tcp[13], len(ip) - (ip[0] & 15) * 4 - (tcp[12] >> 4) * 4))
    cap.close()
    return segs, got


def test_a_close_answer_and_its_fin_leave_in_one_segment(procs):
    """With Connection: close, the answer's last bytes and the FIN go to the
    client in one TCP segment (MSG_MORE on the last send, the close right
    after): one packet and one wake-up of the client less per request, and
    the answer still complete."""
    o = procs.origin("b")
    port = free_port()
    procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
    segs, got = client_segments(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nb\n"), got
    data = [(f, n) for f, n in segs if n > 0]
    fins = [(f, n) for f, n in segs if f & 0x01]
    assert len(fins) == 1 and fins[0][1] > 0 and fins[0] == data[-1], segs


def test_a_large_close_answer_is_not_held_back(procs):
    """MSG_MORE on a send that the socket takes only in part must not hold
    the rest: an 8 MB answer with Connection: close arrives whole and
    without stalls (a held segment would wait for a 200 ms timer or for
    ever)."""
    o = procs.origin("b")
    port = free_port()
    procs.sluice(config(port, [("b", o.address)]), wait_ports=[port])
    size = 8 << 20
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % size)
        time.sleep(0.5)        # sockets fill: sluice's last sends are short
        t0 = time.monotonic()
        got = bytearray()
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            got += d
        took = time.monotonic() - t0
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and len(body) == size, (head, len(body))
    assert took < 2.0, took
