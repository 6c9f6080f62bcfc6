"""Edges of the core: the access log (escaping of client bytes in both
formats, a log reader that stops reading) and the PROXY protocol reader,
through the real binary and real clients."""
import base64
import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import warnings

from harness import (SLUICE, Sluice, free_port, port_open, recv_all, tcp_config,
                     wait_for)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def http_config(port, origin, fmt="combined", workers=1, extra_listener=""):
    return (f"workers: {workers}\n"
            f"log: {{level: info, access: stdout, format: {fmt}}}\n"
            "listeners:\n"
            "  - name: web\n"
            f"    bind: 127.0.0.1:{port}\n"
            "    mode: http\n"
            "    pool: app\n"
            f"{extra_listener}"
            "pools:\n"
            "  - name: app\n"
            f"    backends: [{{name: b1, address: {origin.address}}}]\n")


def raw_exchange(port, request, timeout=10, shut=False):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(request)
        if shut:
            c.shutdown(socket.SHUT_WR)
        return recv_all(c)


# Client bytes that a log line must not pass through as they are: quotes,
# backslashes, a tab (the one control byte a field value may hold), bytes
# that are not UTF-8 (obs-text), and UTF-8 that is fine as it is.
HOSTILE_UA = b'ua\t"q"\\x\xff\xfe end'
HOSTILE_REFERER = b"r\x80\xc3\xa9 \xe2\x82\xac \xe2\x82"    # lone byte, e, euro, cut euro
HOSTILE_ID = b'id\\q\\u12'


def hostile_request():
    return (b"GET /p%22q?a=b HTTP/1.1\r\nHost: h.test\r\nUser-Agent: " + HOSTILE_UA +
            b"\r\nReferer: " + HOSTILE_REFERER + b"\r\nX-Request-Id: " + HOSTILE_ID +
            b"\r\nConnection: close\r\n\r\n")


def test_json_access_log_escapes_client_bytes(procs):
    """Every json access-log line is one valid JSON object in UTF-8, whatever
    bytes the client put in its header fields: a tab is \\t (not the \\x09
    that JSON has no escape for), a quote and a backslash are escaped, UTF-8
    stays, and a byte that is not UTF-8 reads as its ISO-8859-1 character
    (RFC 9110 5.5: obs-text). X-Request-Id from a trusted peer is kept as
    sent, so its backslashes must be escaped too."""
    origin = procs.origin("b1")
    port = free_port()
    s = procs.sluice(http_config(port, origin, fmt="json",
                                 extra_listener="    trusted_proxies: [127.0.0.1/32]\n"),
                     wait_ports=[port])
    assert raw_exchange(port, hostile_request()).startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: s.stdout().count("\n") >= 1, what="the access-log line")
    with open(s.out_path, "rb") as f:
        raw = f.read()
    lines = raw.splitlines()
    assert len(lines) == 1, raw
    rec = json.loads(lines[0].decode("utf-8"))       # strict UTF-8, strict JSON
    assert rec["user_agent"] == 'ua\t"q"\\x\u00ff\u00fe end'
    assert rec["referer"] == "r\u0080\u00e9 \u20ac \u00e2\u0082"
    assert rec["request_id"] == "id\\q\\u12"
    assert rec["target"] == "/p%22q?a=b"
    assert rec["host"] == "h.test"
    assert rec["status"] == 200


def test_combined_access_log_escapes_client_bytes(procs):
    """A combined line stays one line of UTF-8 text whose quoted fields
    cannot be closed early by the client: quotes and backslashes are
    escaped, a tab and a byte that is not UTF-8 print as \\xHH, UTF-8 stays."""
    origin = procs.origin("b1")
    port = free_port()
    s = procs.sluice(http_config(port, origin, fmt="combined"), wait_ports=[port])
    assert raw_exchange(port, hostile_request()).startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: s.stdout().count("\n") >= 1, what="the access-log line")
    with open(s.out_path, "rb") as f:
        raw = f.read()
    lines = raw.splitlines()
    assert len(lines) == 1, raw
    line = lines[0].decode("utf-8")
    assert not re.search(r"[\x00-\x1f\x7f]", line), line
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
    assert quoted[0] == "GET /p%22q?a=b HTTP/1.1", quoted
    assert quoted[1] == "r\\x80\u00e9 \u20ac \\xe2\\x82", quoted
    assert quoted[2] == 'ua\\x09\\"q\\"\\\\x\\xff\\xfe end', quoted
    assert " listener=web " in line


class PausableReader:
    """Reads a pipe or a socket in a thread, and stops reading while
    paused: a log reader (a pipe's, journald) that got stuck."""

    def __init__(self, f):
        self.f = f
        self.data = bytearray()
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.go.set()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        fd = self.f.fileno()
        while True:
            self.go.wait()
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def pause(self):
        self.go.clear()
        time.sleep(0.5)            # a read under way when paused ends

    def resume(self):
        self.go.set()

    def text(self):
        with self.lock:
            return bytes(self.data)


class PipedSluice(Sluice):
    """sluice with its stdout (the access log) and stderr (the error log) on
    pipes that the test reads, and can stop reading."""

    def __init__(self, config_text, wait_ports=()):
        fd, self.config = tempfile.mkstemp(prefix="sluice-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(config_text)
        self.name = "sluice"
        self.p = subprocess.Popen([SLUICE, "-c", self.config], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.pid = self.p.pid
        for f in (self.p.stdout, self.p.stderr):
            # The smallest pipe the kernel allows: a few lines fill it.
            fcntl.fcntl(f.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        self.out, self.err = PausableReader(self.p.stdout), PausableReader(self.p.stderr)
        wait_for(lambda: "event=started" in self.stderr() or not self.alive(),
                 what="sluice to start")
        assert self.alive(), f"sluice exited at start:\n{self.stderr()}"
        for p in wait_ports:
            wait_for(lambda: port_open(p), what=f"port {p}")

    def stdout(self):
        return self.out.text().decode(errors="replace")

    def stderr(self):
        return self.err.text().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        self.out.resume()
        self.err.resume()
        rc = self.end(sig, timeout)
        for r in (self.out, self.err):
            r.t.join(10)           # to the end of what sluice wrote
            r.f.close()
        return rc


def serve_one(port, i):
    """One request on a fresh connection; True when it was answered."""
    try:
        return raw_exchange(port, f"GET /n{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                            .encode(), timeout=5).startswith(b"HTTP/1.1 200 ")
    except socket.timeout:
        return False


def test_access_log_reader_that_stops_reading_does_not_stop_traffic(procs):
    """The access log on a pipe (`sluice | logger`, a container runtime's
    stdout) whose reader stops reading: requests go on being served (their
    lines are lost, as with a full disk) instead of every worker blocking in
    write(2) once the pipe is full. When the reader comes back, lines flow
    again, each of them whole."""
    origin = procs.origin("b1")
    port, admin = free_port(), free_port()
    s = PipedSluice(http_config(port, origin).replace(
        "log:", f"admin: {{listen: 127.0.0.1:{admin}}}\nlog:", 1), wait_ports=[port, admin])
    procs.all.append(s)
    s.out.pause()
    served = 0
    while served < 200 and serve_one(port, served):   # ~200 bytes a line: 10 pipes full
        served += 1
    assert served == 200, f"only {served} of 200 requests served with the log pipe full"
    # The lost lines are counted where an operator looks.
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read()
    dropped = re.search(rb'^sluice_log_lines_dropped_total\{log="access"\} (\d+)$', metrics, re.M)
    assert dropped and int(dropped.group(1)) > 0, metrics
    s.out.resume()

    def later_line_arrives():      # once the reader has made room again
        assert serve_one(port, "after")
        time.sleep(0.1)
        return "/nafter" in s.stdout()
    wait_for(later_line_arrives, timeout=20, interval=0.1, what="the line of a later request")
    lines = s.out.text().splitlines()
    assert all(re.match(rb'127\.0\.0\.1 - - \[.*\] "GET /n\w+ HTTP/1\.1" 200 .* end=\w+$', l)
               for l in lines), lines
    assert lines[0].count(b'"GET /n0 ') == 1


def test_error_log_reader_that_stops_reading_does_not_stop_traffic(procs):
    """The same for the error log (stderr): a client can make sluice log
    at info level at will (here with bad PROXY headers), and a stuck reader
    of stderr must not stop the workers either."""
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    s = PipedSluice(tcp_config(port, [("e1", echo.address)],
                               extra_listener="    proxy_protocol: accept").replace(
                                   "level: debug", "level: info"), wait_ports=[port])
    procs.all.append(s)
    s.err.pause()
    closed = 0
    for _ in range(200):             # ~100 bytes a line: 5 pipes full
        try:
            if raw_exchange(port, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", timeout=5) != b"":
                break
        except socket.timeout:
            break
        closed += 1
    assert closed == 200, f"only {closed} of 200 bad headers answered with stderr full"
    s.err.resume()
    # A good connection after, and its log lines whole.
    assert raw_exchange(port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nping", timeout=10,
                        shut=True) == b"ping"
    wait_for(lambda: s.stdout().count("\n") >= 201, timeout=10, what="201 access-log lines")
    assert all(l.startswith("20") and " level=" in l for l in s.stderr().splitlines())


def proxy_tcp(procs, send_proxy="v1"):
    """A tcp listener that accepts PROXY headers in front of an echo origin
    that expects one from sluice (and prints the addresses it got)."""
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port = free_port()
    s = procs.sluice(tcp_config(port, [("e1", echo.address)],
                                extra_listener="    proxy_protocol: accept",
                                extra_pool=f"    send_proxy: {send_proxy}"), wait_ports=[port])
    return s, echo, port


def v2(cmd, fam, block):
    return V2_SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(block)) + block


V4_BLOCK = (socket.inet_aton("203.0.113.5") + socket.inet_aton("10.1.2.3") +
            struct.pack("!HH", 5555, 443))


def test_proxy_v2_tlvs_must_fit_the_header(procs):
    """TLVs after the addresses are skipped, but they must tile the rest of
    the header: a TLV whose length runs past the header (or a few stray
    bytes) means a corrupt header, which is refused as HAProxy refuses it,
    not half-believed. Well-formed TLVs (an AWS VPC endpoint id, NOOP
    padding) pass and the bytes after the header reach the backend intact."""
    s, echo, port = proxy_tcp(procs)
    good = b"\x04\x00\x03pad" + b"\xea\x00\x0d\x01vpce-1234567"
    assert raw_exchange(port, v2(1, 0x11, V4_BLOCK + good) + b"after tlvs", shut=True) \
        == b"after tlvs"
    wait_for(lambda: "proxy 203.0.113.5:5555 10.1.2.3:443 v1" in echo.stdout(),
             what="the addresses of the good header")
    bad = (b"\x04\x00\x09pad",                    # runs 6 bytes past the header
           b"\x04\x00\x03pad\x04",                # a stray byte after the last TLV
           b"\x04\xff\xff")                       # 64 KiB claimed, none there
    for tlvs in bad:
        assert raw_exchange(port, v2(1, 0x11, V4_BLOCK + tlvs) + b"smuggled", shut=True) == b""
    wait_for(lambda: s.stdout().count("end=proxy_header_bad") == len(bad),
             what="the bad headers logged")
    assert echo.stdout().count("proxy ") == 1
    assert "smuggled" not in echo.stdout()


def test_proxy_v2_local_is_accepted_whatever_its_family(procs):
    """LOCAL is how the balancer in front health-checks us: the spec says
    the receiver "must accept this connection as valid and must use the
    real connection endpoints and discard the protocol block including the
    family which is ignored". So LOCAL with UNSPEC, with addresses, or with
    a family byte PROXY would not allow, all reach the backend as the real
    peer (127.0.0.1 here); PROXY with that family is still refused."""
    s, echo, port = proxy_tcp(procs)
    for i, (fam, block) in enumerate(((0x00, b""), (0x11, V4_BLOCK), (0x40, b""),
                                      (0x13, b"junk!"))):
        assert raw_exchange(port, v2(0, fam, block) + f"check {i}".encode(), shut=True) \
            == f"check {i}".encode()
    wait_for(lambda: echo.stdout().count("proxy 127.0.0.1:") == 4,
             what="4 LOCAL connections with the real peer")
    assert "203.0.113.5" not in echo.stdout()
    assert raw_exchange(port, v2(1, 0x40, b"") + b"x", shut=True) == b""
    wait_for(lambda: "end=proxy_header_bad" in s.stdout(), what="PROXY with family 0x40 refused")


def test_proxy_header_split_across_reads(procs):
    """A header that arrives a few bytes at a time (v1 and v2, TLVs
    included) is put together, and what follows it is forwarded whole."""
    s, echo, port = proxy_tcp(procs)
    for header, who in ((b"PROXY TCP6 2001:db8::7 2001:db8::8 40000 443\r\n",
                         "proxy [2001:db8::7]:40000 [2001:db8::8]:443 v1"),
                        (v2(1, 0x11, V4_BLOCK + b"\x04\x00\x02ab"), "proxy 203.0.113.5:5555 10.1.2.3:443 v1")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            msg = header + b"payload"
            for i in range(0, len(msg), 3):
                c.sendall(msg[i:i + 3])
                time.sleep(0.01)
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"payload"
        wait_for(lambda: who in echo.stdout(), what=f"the backend to see {who}")


def auth_config(port, origin, users_file, drain="30s"):
    return (f"workers: 1\ndrain_timeout: {drain}\nlog: {{level: info, access: stdout}}\n"
            "listeners:\n  - name: web\n"
            f"    bind: 127.0.0.1:{port}\n    mode: http\n    pool: app\n"
            f"    auth: {{type: basic, realm: staff, users_file: {users_file}}}\n"
            "pools:\n  - name: app\n"
            f"    backends: [{{name: b1, address: {origin.address}}}]\n")


def slow_hash_request(password):
    cred = base64.b64encode(f"ann:{password}".encode()).decode()
    return (f"GET / HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {cred}\r\n"
            "Connection: close\r\n\r\n").encode()


def test_offload_jobs_outlive_their_connections_and_the_process(procs, tmp_path):
    """Password hashes run on helper threads (core/offload.c). A client that
    leaves while its hash is queued or running, and a stop while jobs are
    still queued, must neither touch a freed connection (ASan watches) nor
    keep sluice from exiting cleanly."""
    users = tmp_path / "users"
    users.write_text(f"ann:{crypt.crypt('right', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 11))}\n")
    origin = procs.origin("b1")
    port = free_port()
    s = procs.sluice(auth_config(port, origin, users), wait_ports=[port])
    # Ten clients ask and leave at once: their jobs finish after them.
    for i in range(10):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(slow_hash_request(f"wrong{i}"))
    # The worker serves on, and the helpers get to a later job.
    assert raw_exchange(port, slow_hash_request("right"), timeout=30).startswith(b"HTTP/1.1 200 ")
    # Jobs queued behind the helpers when the stop comes: cancelled, or
    # answered while draining, and the process exits with 0.
    held = []
    for i in range(8):
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.sendall(slow_hash_request(f"again{i}"))
        held.append(c)
    time.sleep(0.2)
    assert s.stop() == 0, s.stderr()[-2000:]
    for c in held:
        try:
            got = recv_all(c)
        except OSError:
            got = b""
        assert got == b"" or got.startswith((b"HTTP/1.1 401 ", b"HTTP/1.1 503 ")), got[:100]
        c.close()
