"""Edge cases of the L4 proxy (src/proxy/tcp.c, pump.c, udp.c) through the
real binary: bytes sluice itself read before connecting, half-close,
accounting. Each test starts its own origin and sluice on free loopback
ports and stops them (the procs fixture); every wait is bounded."""
import socket
import struct
import time

from harness import AcceptLoop, free_port, recv_all, tcp_config, wait_for

ROUTES = ("    routes:\n"
          "      - match: {host: a.test}\n"
          "        pool: app")


def long_hello_prefix():
    """A TLS handshake record as long as TLS allows (16384 bytes of
    plaintext) that begins a ClientHello longer than sluice's buffer: the
    routes read a full buffer of it, find no name and pass it all on."""
    body = bytes([1]) + (16380).to_bytes(3, "big") + bytes(range(256)) * 63 + bytes(252)
    assert len(body) == 16384
    return bytes([22, 3, 1]) + struct.pack("!H", len(body)) + body


def echo_through(port, payload, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        return recv_all(c)


def test_send_proxy_after_full_hello_buffer_keeps_every_byte(procs):
    """With routes (SNI) the listener reads the client's first bytes into a
    buffer before a backend is picked; with send_proxy the PROXY header is
    then put in front of them. When that buffer is full (a ClientHello as
    long as the buffer), the header and the bytes together no longer fit in
    one buffer: every byte the client sent must still reach the backend, in
    order, after the header (a lost byte corrupts the client's stream)."""
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)], extra_listener=ROUTES,
                            extra_pool="    send_proxy: v1"), [port])
    payload = long_hello_prefix() + b"tail bytes after the hello"
    got = echo_through(port, payload)
    assert len(got) == len(payload), f"sent {len(payload)} bytes, backend got {len(got)}"
    assert got == payload
    wait_for(lambda: "proxy 127.0.0.1:" in echo.stdout(), what="origin to see the PROXY header")


def test_send_proxy_after_full_proxy_in_buffer_keeps_every_byte(procs):
    """A PROXY v2 header in (28 bytes) turned into a v1 header out (longer)
    while the client's first read filled the buffer: the bytes that came
    with the incoming header must all reach the backend after the new one."""
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)],
                            extra_listener="    proxy_protocol: accept",
                            extra_pool="    send_proxy: v1"), [port])
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton("203.0.113.5") + socket.inet_aton("10.1.2.3") + \
        struct.pack("!HH", 55555, 8443)
    hdr = sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs
    data = bytes(range(256)) * 80       # more than the 16 KiB buffer
    bad = 0
    for _ in range(5):
        got = echo_through(port, hdr + data)
        bad += got != data
    assert bad == 0, f"{bad} of 5 connections lost or reordered bytes"



def test_client_fin_inside_hello_delivers_the_bytes_before_it(procs):
    """With routes, a client whose first bytes look like the start of a TLS
    record and who then half-closes (FIN) before a whole ClientHello came
    must not lose those bytes: they are routed without a name and reach the
    backend, the FIN passes on after them, and the backend's answer (here an
    echo) still flows back through the open direction."""
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)], extra_listener=ROUTES), [port])
    partial = bytes([22, 3, 1, 0, 200]) + b"only part of a record"
    assert echo_through(port, partial) == partial


ANSWER = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def answer_then_reset(c):
    """A backend that answers after 100 bytes and closes without reading
    the rest of the upload: its kernel resets the connection (RST)."""
    try:
        c.settimeout(5)
        c.recv(100)
        c.sendall(ANSWER)
    except OSError:
        pass
    c.close()


def upload_and_read(port, size, timeout=10):
    """Send size bytes (from a thread, it may block) and read what comes
    back until the end or a reset."""
    import threading
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        def up():
            try:
                c.sendall(b"x" * size)
            except OSError:
                pass
        t = threading.Thread(target=up, daemon=True)
        t.start()
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
        except OSError:
            pass
        t.join(timeout)
    return got


def test_backend_answer_before_its_reset_reaches_the_client(procs):
    """A backend that answers and then resets (it closed with part of the
    upload unread, like an HTTP server refusing a large body) must still
    have its answer delivered: a direct client reads bytes that came before
    a reset, so sluice must pass them on before it resets the client. Both
    orders are tried: the reset found by the write of more upload bytes,
    and the reset reported by the backend socket's own event (EPOLLERR)."""
    from harness import AcceptLoop
    origin = AcceptLoop(answer_then_reset)
    try:
        # Direct, the answer always arrives: the test's own premise.
        assert upload_and_read(origin.port, 4 << 20) == ANSWER
        port = free_port()
        procs.sluice(tcp_config(port, [("b1", origin.address)]), [port])
        for size in (4 << 20, 200 * 1024):
            lost = sum(upload_and_read(port, size) != ANSWER for _ in range(10))
            assert lost == 0, f"upload of {size} bytes: answer lost on {lost} of 10 connections"
    finally:
        origin.stop()


def test_a_tls_backends_reset_reaches_the_client_as_a_reset(procs, pki):
    """A pool with tls whose backend sends some bytes and then resets: the
    client must see a reset after those bytes, never a clean end (FIN), or
    a cut stream would pass for a whole one. A reset under TLS was read as
    the TLS stream's end without close_notify, that is as a clean close."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["a"])

    def serve(c):
        try:
            t = ctx.wrap_socket(c, server_side=True)
            t.recv(100)
            t.sendall(b"part of an answer")
            time.sleep(0.3)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            t.close()                          # a reset, no close_notify
        except (OSError, ssl.SSLError):
            pass

    backend = AcceptLoop(serve)
    port = free_port()
    procs.sluice(tcp_config(port, [("t1", backend.address)], extra_pool="    tls: {verify: false}"))
    got, ending = b"", None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"hello")
            while True:
                try:
                    d = c.recv(100)
                except ConnectionResetError:
                    ending = "reset"
                    break
                if not d:
                    ending = "fin"
                    break
                got += d
    finally:
        backend.stop()
    assert got == b"part of an answer" and ending == "reset", (got, ending)


def test_a_flooding_udp_backend_does_not_starve_other_flows(procs):
    # Each backend reply is relayed with a recv and a sendto; a backend that
    # sends faster than that kept the worker reading its flow socket until
    # the flood ended (edge-triggered, read until EAGAIN), and every other
    # flow on the worker waited that long for its answer.
    flood = procs.origin("flood", mode="udp-echo", extra=("--udp-flood", "6000"))
    echo = procs.origin("e1", mode="udp-echo", extra=("--udp-tag",))
    port = free_port()
    procs.sluice("\n".join([
        "workers: 1", "listeners:",
        "  - name: u", f"    bind: 127.0.0.1:{port}", "    mode: udp", "    pool: app",
        "pools:", "  - name: app", "    balance: round_robin", "    backends:",
        f"      - {{name: flood, address: {flood.address}}}",
        f"      - {{name: e1, address: {echo.address}}}"]) + "\n")
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        victim.sendto(b"flood me", ("127.0.0.1", port))   # first flow: the flooder
        # Wait until the flood reaches the first client through sluice.
        victim.settimeout(5)
        assert victim.recv(2048) == b"flood me"
        time.sleep(0.5)
        other.settimeout(0.2)
        start = time.monotonic()
        reply = None
        while reply is None and time.monotonic() - start < 5:
            other.sendto(b"hello", ("127.0.0.1", port))
            try:
                reply = other.recv(2048)
            except socket.timeout:
                pass
        waited = time.monotonic() - start
        assert reply == b"e1:hello"
        assert waited < 2.5, "the other flow waited %.1f s behind the flood" % waited
    finally:
        victim.close()
        other.close()
