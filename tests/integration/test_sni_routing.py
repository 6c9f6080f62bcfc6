"""Routing TLS by its server name without decrypting it (tcp listeners with
routes), through the real binary: TLS origins this file starts (each says
its name over TLS), Python's ssl as the client, the test CA from conftest."""
import socket
import ssl
import subprocess
import threading
import time

import pytest

from harness import SLUICE, AcceptLoop, free_port, recv_all, wait_for


class TlsOrigin:
    """Terminates TLS with one of the test certificates and answers each
    connection with its name, the server name it was asked for, and the
    first line it read, then closes."""

    def __init__(self, name, pki, cert="a"):
        self.name = name
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*pki[cert])
        self.asked = []
        ctx.sni_callback = lambda sock, sni, c: self.asked.append(sni) and None
        self.ctx = ctx
        self.loop = AcceptLoop(
            lambda c: threading.Thread(target=self.serve, args=(c,), daemon=True).start())
        self.port, self.address = self.loop.port, self.loop.address

    def serve(self, c):
        try:
            c.settimeout(5)
            with self.ctx.wrap_socket(c, server_side=True) as t:
                line = b""
                while not line.endswith(b"\n"):
                    d = t.recv(1)
                    if not d:
                        break
                    line += d
                t.sendall(f"{self.name} {line.decode().strip()}\n".encode())
        except (OSError, ssl.SSLError):
            c.close()

    def stop(self):
        self.loop.stop()


@pytest.fixture
def origins(pki):
    os_ = {"api": TlsOrigin("api", pki), "web": TlsOrigin("web", pki, "b"),
           "default": TlsOrigin("default", pki)}
    yield os_
    for o in os_.values():
        o.stop()


def config(port, origins, listener_extra="", routes=None):
    routes = routes if routes is not None else (
        "      - match: {host: a.test}\n        pool: api\n"
        "      - match: {host: '*.b.test'}\n        pool: web\n")
    pools = "".join(f"  - name: {n}\n    backends: [{{name: {n}1, address: {o.address}}}]\n"
                    for n, o in origins.items())
    return (f"workers: 1\nlog: {{level: debug, access: stdout}}\nlisteners:\n"
            f"  - name: tls\n    bind: 127.0.0.1:{port}\n    mode: tcp\n    pool: default\n"
            f"{listener_extra}    routes:\n{routes}pools:\n{pools}")


def ask(port, pki, server_name, line="hello", verify=True):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=server_name) as t:
            t.sendall(line.encode() + b"\n")
            return t.recv(4096).decode().strip()


def test_routes_pick_the_pool_by_server_name(procs, pki, origins):
    port = free_port()
    s = procs.sluice(config(port, origins), wait_ports=[port])
    # End to end TLS: the client checks the origin's own certificate.
    assert ask(port, pki, "a.test") == "api hello"
    assert ask(port, pki, "x.b.test") == "web hello"
    assert ask(port, pki, "A.TEST") == "api hello"       # names are not case-sensitive
    # Another name, or none: the listener's pool.
    assert ask(port, pki, "other.test", verify=False) == "default hello"
    assert ask(port, pki, None, verify=False) == "default hello"
    # sluice passed the hello through untouched: the origin saw the same name.
    assert origins["api"].asked[-1] in ("a.test", "A.TEST")
    assert "a.test" in origins["api"].asked
    s.stop()
    assert any('server_name="x.b.test" route=2 pool=web' in l for l in s.log_lines("tcp_route"))
    # The access log names the server name each connection was routed on.
    log = s.stdout().splitlines()
    assert any(" web/web1 " in l and l.endswith(" sni=x.b.test") for l in log), log
    assert any(" api/api1 " in l and l.endswith(" sni=a.test") for l in log), log
    assert any(" default/default1 " in l and l.endswith(" sni=-") for l in log), log


def test_a_hello_in_pieces_and_after_a_proxy_header(procs, pki, origins):
    port = free_port()
    procs.sluice(config(port, origins, listener_extra="    proxy_protocol: accept\n"),
                 wait_ports=[port])
    # The ClientHello made by Python's ssl, sent a few bytes at a time after
    # a PROXY v1 header, then the handshake finished over the same socket.
    ctx = ssl.create_default_context(cafile=pki["ca"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="x.b.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = out.read()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 443\r\n")
        for i in range(0, len(hello), 50):
            s.sendall(hello[i:i + 50])
            time.sleep(0.01)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
                inc.write(s.recv(65536))
        s.sendall(out.read())
        tls.write(b"pieces\n")
        s.sendall(out.read())
        reply = b""
        while not reply.endswith(b"\n"):
            inc.write(s.recv(65536))
            try:
                reply += tls.read(4096)
            except ssl.SSLWantReadError:
                pass
    assert reply.decode().strip() == "web pieces"


def test_what_is_not_tls_goes_to_the_listeners_pool(procs, pki, origins):
    plain = procs.origin("plain")
    port = free_port()
    routes = "      - match: {host: a.test}\n        pool: api\n"
    cfg = config(port, origins, routes=routes).replace(
        f"address: {origins['default'].address}", f"address: {plain.address}")
    s = procs.sluice(cfg, wait_ports=[port])
    # Plain HTTP is known not to be TLS at its first byte: no wait.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        t0 = time.monotonic()
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_all(c)
        assert time.monotonic() - t0 < 1.0
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"plain\n")
    s.stop()
    assert any('server_name="" route=0 pool=default' in l for l in s.log_lines("tcp_route"))


def test_a_silent_client_is_routed_after_client_header(procs, pki, origins):
    # A protocol where the server speaks first: after timeouts.client_header
    # without a hello, the connection goes to the listener's pool.
    greeter = procs.origin("greeter", mode="tcp-echo")
    port = free_port()
    cfg = config(port, origins, listener_extra="    timeouts: {client_header: 300ms}\n")
    cfg = cfg.replace(f"address: {origins['default'].address}", f"address: {greeter.address}")
    s = procs.sluice(cfg, wait_ports=[port])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        # Nothing sent: no decision before client_header runs out, then the
        # listener's pool without a name, before the client says a word.
        time.sleep(0.1)
        assert not s.log_lines("tcp_route")
        wait_for(lambda: s.log_lines("tcp_route"), timeout=2, what="the route after 300 ms")
        assert 'server_name="" route=0 pool=default' in s.log_lines("tcp_route")[0]
        c.sendall(b"late\n")
        assert c.recv(100) == b"late\n"                  # echoed by the default pool


def test_a_terminating_listener_routes_on_the_handshakes_name(procs, pki):
    a, b = procs.origin("oa"), procs.origin("ob")
    port = free_port()
    cfg = (f"workers: 1\nlog: {{level: info, access: stdout}}\nlisteners:\n"
           f"  - name: tls\n    bind: 127.0.0.1:{port}\n    mode: tcp\n    pool: pa\n"
           f"    tls: {{certificates: [{{cert: {pki['a'][0]}, key: {pki['a'][1]}}},"
           f" {{cert: {pki['b'][0]}, key: {pki['b'][1]}}}]}}\n"
           "    routes:\n      - match: {host: '*.b.test'}\n        pool: pb\n"
           f"pools:\n  - name: pa\n    backends: [{{address: {a.address}}}]\n"
           f"  - name: pb\n    backends: [{{address: {b.address}}}]\n")
    procs.sluice(cfg, wait_ports=[port])
    ctx = ssl.create_default_context(cafile=pki["ca"])
    for name, want in (("a.test", b"oa\n"), ("q.b.test", b"ob\n")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=name) as t:
                t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = recv_all(t)
        assert data.endswith(want), (name, data)


def test_tcp_route_config_errors(tmp_path, pki, origins):
    port = free_port()
    cases = [
        ("      - match: {host: a.test, path_prefix: /x}\n        pool: api\n",
         "a tcp listener's routes match only on host (the TLS server name) and source"),
        ("      - match: {host: a.test}\n        respond: {status: 200}\n",
         "a tcp listener's routes forward to a pool or a split"),
        ("      - match: {host: a.test}\n        pool: api\n        set_headers: {x: y}\n",
         "have no header, path, auth, rate_limit or mirror settings"),
    ]
    for i, (routes, want) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(config(port, origins, routes=routes))
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and want in r.stdout + r.stderr, (want, r.stdout, r.stderr)
    # routes on a udp listener: refused
    path = tmp_path / "udp.yaml"
    path.write_text(config(port, origins).replace("mode: tcp", "mode: udp"))
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1 and "routes only applies to mode http and tcp" in r.stdout + r.stderr
