"""TLS edge cases: how a TLS connection ends (close_notify, RFC 9112
section 9.8), and the handshake's corner cases, with real clients (Python's
ssl over memory BIOs, so that every byte on the wire is the test's to time)
and certificates made by the openssl command (the pki fixture)."""
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import time

from harness import SLUICE, AcceptLoop, free_port, wait_for


def config(port, backend, pki, extra_tls="", extra="", certs=("a", "b"), http2=False):
    cl = ", ".join(f"{{cert: {pki[c][0]}, key: {pki[c][1]}}}" for c in certs)
    return "\n".join([
        "workers: 1", "log: {level: info, access: stdout}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app",
        "    http2: true" if http2 else "",
        f"    tls: {{certificates: [{cl}]{extra_tls}}}", extra,
        "pools:", "  - name: app", "    backends:", f"      - {{name: b1, address: {backend}}}",
    ]) + "\n"


class StrictTLS:
    """A TLS client over memory BIOs that tells an end with close_notify
    from a bare TCP end (which Python's default context, like many
    clients, reads as a clean end: OP_IGNORE_UNEXPECTED_EOF is cleared)."""

    def __init__(self, port, pki, host="a.test", tls12=False, alpn=None, rcvbuf=None):
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=host)
        self.eof = False
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill(10)
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if d:
            self.inc.write(d)
        else:
            self.inc.write_eof()
            self.eof = True

    def send(self, data):
        self.obj.write(data)
        self._flush()

    def close_notify(self):
        """Our close_notify: a TLS half-close (we still read)."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def read_until_end(self, timeout=20):
        """(bytes, how the connection ended): "close_notify", or "eof" for
        a TCP end (FIN or reset) without one."""
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = self.obj.read(65536)
                if not d:
                    return got, "close_notify"
                got += d
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return got, "close_notify"
            except ssl.SSLError as e:
                if "UNEXPECTED_EOF" in str(e) or isinstance(e, ssl.SSLEOFError):
                    return got, "eof"
                raise
            if self.eof:
                return got, "eof"
            self._fill(max(0.1, deadline - time.monotonic()))
        raise AssertionError(f"the connection did not end within {timeout}s: {got[:200]!r}")

    def read_until(self, marker, timeout=20):
        """What came until marker (a keep-alive answer's end)."""
        got = b""
        deadline = time.monotonic() + timeout
        while marker not in got:
            assert time.monotonic() < deadline and not self.eof, got[:200]
            try:
                got += self.obj.read(65536)
            except ssl.SSLWantReadError:
                self._fill(max(0.1, deadline - time.monotonic()))
        return got

    def close(self):
        self.sock.close()


def test_the_strict_client_tells_a_bare_tcp_end(procs, pki):
    """The check the tests below rely on: a reset in the middle of a
    close-delimited answer reaches the client as a bare end, never as
    close_notify, which would make the cut body look whole."""
    def on_conn(c):
        c.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            more = c.recv(4096)
            if not more:
                return
            data += more
        c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 3000)
        time.sleep(0.5)                 # the bytes reach sluice before the reset
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    be = AcceptLoop(on_conn)
    try:
        port = free_port()
        procs.sluice(config(port, be.address, pki), wait_ports=[port])
        c = StrictTLS(port, pki)
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        got, how = c.read_until_end()
        c.close()
        assert got.startswith(b"HTTP/1.1 200"), got[:100]
        assert how == "eof", "a cut close-delimited body ended with close_notify"
    finally:
        be.stop()


def test_an_answer_the_client_did_not_take_in_time_ends_without_close_notify(procs, pki):
    """The backend's whole close-delimited answer came, but the client
    stopped reading, and client_idle ends the connection with most of it
    undelivered: what the client then reads must end without close_notify,
    or the cut body would look whole."""
    body = b"y" * (16 << 20)          # more than every buffer on the way holds

    def on_conn(c):
        c.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            more = c.recv(4096)
            if not more:
                return
            data += more
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        except OSError:
            pass
        c.close()
    be = AcceptLoop(on_conn)
    try:
        port = free_port()
        procs.sluice(config(port, be.address, pki, extra="    timeouts: {client_idle: 1s}"),
                     wait_ports=[port])
        c = StrictTLS(port, pki, rcvbuf=4096)
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        time.sleep(3)                   # client_idle passes with the answer unread
        got, how = c.read_until_end()
        c.close()
        assert got.startswith(b"HTTP/1.1 200") and len(got) < len(body), len(got)
        assert how == "eof", "an answer cut by client_idle ended with close_notify"
    finally:
        be.stop()


def test_idle_keepalive_connections_end_with_close_notify(procs, pki):
    """A keep-alive connection that client_idle ends, one that never sent
    a request (client_header), and one a client half-closed with its own
    close_notify after its request, all end with sluice's close_notify
    before the FIN, as RFC 9112 section 9.8 requires and NGINX does: a
    client that checks for truncation (OpenSSL 3 without
    IGNORE_UNEXPECTED_EOF) otherwise sees an error where there is none."""
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki,
                        extra="    timeouts: {client_idle: 1s, client_header: 2s}"),
                 wait_ports=[port])
    for tls12 in (False, True):
        c = StrictTLS(port, pki, tls12=tls12)
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        got, how = c.read_until_end()
        c.close()
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"b1\n"), got
        assert how == "close_notify", f"idle close (tls12={tls12}) without close_notify"

    c = StrictTLS(port, pki)
    got, how = c.read_until_end()
    c.close()
    assert (got, how) == (b"", "close_notify"), "client_header close without close_notify"

    c = StrictTLS(port, pki)
    c.send(b"GET /delay/200 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    c.close_notify()
    got, how = c.read_until_end()
    c.close()
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"b1\n"), got
    assert how == "close_notify", "the answer to a half-closed client without close_notify"


def test_draining_closes_idle_tls_connections_with_close_notify(procs, pki):
    """SIGTERM: an idle keep-alive TLS connection is closed with
    close_notify, as a clean end."""
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o.address, pki), wait_ports=[port])
    c = StrictTLS(port, pki)
    c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert c.read_until(b"b1\n").startswith(b"HTTP/1.1 200")
    s.send_signal(signal.SIGTERM)
    _, how = c.read_until_end()
    c.close()
    assert how == "close_notify"


def test_an_idle_http2_connection_ends_with_goaway_and_close_notify(procs, pki):
    """HTTP/2 over TLS: client_idle ends an idle connection with GOAWAY,
    then close_notify, then the FIN."""
    import h2.config
    import h2.connection
    import h2.events
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(config(port, o.address, pki, http2=True, extra="    timeouts: {client_idle: 1s}"),
                 wait_ports=[port])
    c = StrictTLS(port, pki, alpn=["h2"])
    assert c.obj.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"),
                          (":authority", "a.test")], end_stream=True)
    c.send(conn.data_to_send())
    got, how = c.read_until_end()
    c.close()
    events = conn.receive_data(got)
    assert any(isinstance(e, h2.events.StreamEnded) for e in events), events
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events), events
    assert how == "close_notify"


def test_a_client_that_leaves_during_the_handshake_is_logged_with_a_reason(procs, pki):
    """A client that closes before finishing its handshake (a port probe,
    a client that gives up) is logged with OpenSSL's reason, not "unknown
    error", on tcp and http listeners."""
    echo = procs.origin("e1", mode="tcp-echo")
    port, hport = free_port(), free_port()
    cert = f"{{cert: {pki['a'][0]}, key: {pki['a'][1]}}}"
    s = procs.sluice("\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:",
        f"  - {{name: l4, bind: 127.0.0.1:{port}, mode: tcp, pool: app, tls: {{certificates: [{cert}]}}}}",
        f"  - {{name: web, bind: 127.0.0.1:{hport}, mode: http, pool: app, tls: {{certificates: [{cert}]}}}}",
        "pools:", "  - name: app", "    backends:", f"      - {{name: e1, address: {echo.address}}}",
    ]) + "\n", wait_ports=[port, hport])
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # Half a ClientHello, then the FIN (http listeners accept once bytes came).
    with socket.create_connection(("127.0.0.1", hport), timeout=5) as c:
        c.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        c.shutdown(socket.SHUT_WR)
        c.recv(100)

    def failures():
        return [l for l in s.log_lines("tls_handshake_failed") if "listener=web" in l] and \
            [l for l in s.log_lines("tls_handshake_failed") if "listener=l4" in l]
    wait_for(failures, what="both failed handshakes logged")
    for line in s.log_lines("tls_handshake_failed"):
        assert "unknown error" not in line and "eof" in line, line


def test_an_encrypted_key_is_an_error_not_a_passphrase_prompt(pki, tmp_path):
    """A private key under a passphrase: sluice has no way to be given one,
    so it is a clear FILE:LINE:COL error at once. It used to prompt "Enter
    PEM pass phrase:" and wait on the terminal or stdin (OpenSSL's default),
    which held `sluice check`, a start or a reload's new process until
    stdin closed, and then failed with "UI routines::processing error"."""
    key = tmp_path / "enc.key"
    subprocess.run(["/usr/bin/openssl", "pkey", "-in", pki["a"][1], "-aes256", "-passout",
                    "pass:secret", "-out", str(key)], check=True, capture_output=True, timeout=30)
    os.chmod(key, 0o600)
    port = free_port()
    cases = [
        config(port, "127.0.0.1:9", pki, certs=("a",)).replace(pki["a"][1], str(key)),
        # A pool's client certificate (mTLS towards backends) too.
        config(port, "127.0.0.1:9", pki, certs=("a",)).replace(
            "  - name: app\n", f"  - name: app\n    tls: {{cert: {pki['a'][0]}, key: {key}}}\n"),
    ]
    for text in cases:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        # stdin stays open, as a terminal's would.
        with open(tmp_path / "out", "w+") as out_file:
            p = subprocess.Popen([SLUICE, "check", "-c", str(path)], stdin=subprocess.PIPE,
                                 stdout=out_file, stderr=subprocess.STDOUT, text=True)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdin.close()
            out_file.seek(0)
            out = out_file.read()
        assert p.returncode != -9, f"sluice check waited for a passphrase:\n{out}"
        assert p.returncode == 1, out
        assert "pass phrase" not in out, out
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: error: .*'{re.escape(str(key))}' is "
                         r"encrypted", out), out
