"""PROXY protocol v1/v2 accepted from the L4 in front and sent to backends."""
import socket
import struct
import time
import urllib.request

from harness import AcceptLoop, free_port, recv_all, tcp_config, wait_for


def v2_header(src, sport, dst, dport):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


def crc32c(data):
    """CRC32C (Castagnoli), bit by bit: written apart from sluice's table."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def v2_header_with_crc(src, sport, dst, dport, corrupt=False):
    """A v2 TCP4 header whose PP2_TYPE_CRC32C TLV (proxy-protocol.txt 2.2.5)
    sums the whole header with the checksum's own bytes as zeroes, after an
    AUTHORITY TLV that the sum covers too; corrupt: the checksum is off by
    one bit."""
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    tlvs = b"\x02\x00\x05a.com" + b"\x03\x00\x04" + b"\x00" * 4
    hdr = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) +
           struct.pack("!H", len(addrs) + len(tlvs)) + addrs + tlvs)
    crc = crc32c(hdr) ^ (1 if corrupt else 0)
    return hdr[:-4] + struct.pack("!I", crc)


def test_crc32c_helper_matches_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283


def echo_roundtrip(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        return recv_all(c)


def test_proxy_v1_in_v2_out(procs):
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)],
                            extra_listener="    proxy_protocol: accept",
                            extra_pool="    send_proxy: v2"))
    got = echo_roundtrip(port, b"PROXY TCP4 192.0.2.7 198.51.100.9 40000 443\r\nhello")
    assert got == b"hello"
    wait_for(lambda: "proxy 192.0.2.7:40000 198.51.100.9:443 v2" in echo.stdout(),
             what="origin to see the client from the PROXY header")


def test_proxy_v2_in_v1_out(procs):
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)],
                            extra_listener="    proxy_protocol: accept",
                            extra_pool="    send_proxy: v1"))
    got = echo_roundtrip(port, v2_header("203.0.113.5", 5555, "10.1.2.3", 8443) + b"data after")
    assert got == b"data after"
    wait_for(lambda: "proxy 203.0.113.5:5555 10.1.2.3:8443 v1" in echo.stdout(),
             what="origin to see v1 with the real client")


def test_send_proxy_without_incoming_header_uses_peer(procs):
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)], extra_pool="    send_proxy: v2"))
    assert echo_roundtrip(port, b"plain") == b"plain"
    wait_for(lambda: f"127.0.0.1:{port} v2" in echo.stdout(),
             what="origin to see our listener as destination")


def test_malformed_proxy_header_is_closed_and_counted(procs):
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port = free_port()
    s = procs.sluice(tcp_config(port, [("e1", echo.address)],
                                extra_listener="    proxy_protocol: accept"))
    for bad in (b"GET / HTTP/1.1\r\n\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
                b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12):
        assert echo_roundtrip(port, bad) == b""
    wait_for(lambda: s.stdout().count("end=proxy_header_bad") == 3, what="3 bad headers logged")
    # Nothing reached the backend.
    assert "proxy " not in echo.stdout()


def test_proxy_v2_crc32c_is_checked(procs):
    """A v2 header carrying a CRC32C TLV: with the right checksum its
    addresses are believed and the bytes after it reach the backend (also
    when the header comes in two pieces, the sum known only at its end);
    with a wrong one the connection is closed before any backend sees a
    byte, and it is logged and counted as a bad header (HAProxy closes such
    connections too)."""
    echo = procs.origin("e1", mode="tcp-echo", extra=("--expect-proxy",))
    port, admin = free_port(), free_port()
    s = procs.sluice(tcp_config(port, [("e1", echo.address)],
                                top=f"admin: {{listen: 127.0.0.1:{admin}}}",
                                extra_listener="    proxy_protocol: accept",
                                extra_pool="    send_proxy: v1"), wait_ports=[port])
    good = v2_header_with_crc("203.0.113.5", 5555, "10.1.2.3", 8443)
    assert echo_roundtrip(port, good + b"checked") == b"checked"
    wait_for(lambda: "proxy 203.0.113.5:5555 10.1.2.3:8443 v1" in echo.stdout(),
             what="origin to see the client from the checksummed header")

    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(good[:20])
        time.sleep(0.2)                    # sluice has read the first piece
        c.sendall(good[20:] + b"in two")
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b"in two"

    bad = v2_header_with_crc("198.51.100.66", 6666, "10.1.2.3", 8443, corrupt=True)
    assert echo_roundtrip(port, bad + b"smuggled") == b""
    wait_for(lambda: s.stdout().count("end=proxy_header_bad") == 1, what="the bad header logged")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read()
    assert b'sluice_proxy_header_errors_total{listener="l4"} 1' in metrics, metrics
    assert "198.51.100.66" not in echo.stdout()
    assert echo.stdout().count("proxy ") == 2


def test_send_proxy_to_a_tls_pool_goes_before_the_handshake(procs, pki):
    """A pool with tls and send_proxy: the PROXY header goes in the clear,
    before the TLS handshake (as HAProxy's send-proxy with ssl and NGINX's
    proxy_protocol with proxy_ssl send it, and as a PROXY-then-TLS listener
    reads it), not as the first bytes inside TLS."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["a"])
    got = {}

    def serve(c):
        try:
            c.settimeout(5)
            line = b""
            while not line.endswith(b"\r\n") and len(line) < 108:
                line += c.recv(1)          # the header, byte by byte, in the clear
            got["header"] = line
            t = ctx.wrap_socket(c, server_side=True)
            got["inside"] = t.recv(100)
            t.sendall(b"pong")
            t.close()
        except (OSError, ssl.SSLError) as e:
            got["error"] = repr(e)

    backend = AcceptLoop(serve)
    port = free_port()
    procs.sluice(tcp_config(port, [("t1", backend.address)],
                            extra_pool="    send_proxy: v1\n    tls: {verify: false}"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"ping")
            reply = c.recv(100)
    finally:
        backend.stop()
    assert "error" not in got, got
    assert got["header"].startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), got
    assert got["inside"] == b"ping" and reply == b"pong", (got, reply)
