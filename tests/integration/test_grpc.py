"""gRPC through sluice: python3-grpcio clients speak HTTP/2 (prior
knowledge) to an http listener with `http2: true`, sluice balances each call
over a pool with `http2: true` whose backends are python3-grpcio servers
(tests/integration/grpc_echo.py). Unary, server, client and bidirectional
streaming calls, status codes and trailing metadata, balancing per call,
and a backend that dies."""
import os
import subprocess
import sys

import grpc
import pytest

from harness import SLUICE, Proc, free_port, port_open, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


class GrpcServer(Proc):
    def __init__(self, name, tls=()):
        self.origin_name = name
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        super().__init__([sys.executable, os.path.join(HERE, "grpc_echo.py"), str(self.port), name,
                          *tls], f"grpc-{name}")
        wait_for(lambda: "listening" in self.stdout() or not self.alive(), timeout=10,
                 what=f"gRPC server {name}")
        assert self.alive(), self.stderr()


@pytest.fixture
def grpc_servers(procs):
    servers = [GrpcServer("g1"), GrpcServer("g2")]
    procs.all.extend(servers)
    return servers


def config(port, servers, log="access: off", pool_tls=""):
    return "\n".join([
        "workers: 1", f"log: {{level: info, {log}}}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    http2: true", "    pool: grpc",
        "pools:", "  - name: grpc", "    http2: true", "    balance: round_robin",
        f"    tls: {pool_tls}" if pool_tls else "",
        "    retries: {attempts: 2, retry_on: [connect_failure]}",
        "    backends:"] + [f"      - {{name: {s.origin_name}, address: {s.address}}}" for s in servers]) + "\n"


def test_grpc_calls_of_every_kind(procs, grpc_servers):
    port = free_port()
    s = procs.sluice(config(port, grpc_servers, log="access: stdout"), wait_ports=[port])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        echo = ch.unary_unary("/test.Echo/Echo")
        # Unary: the answer, the trailing metadata, and one call per backend in turn.
        served = []
        for i in range(6):
            reply, call = echo.with_call(b"hi%d" % i, timeout=10)
            name = dict(call.trailing_metadata())["x-served-by"]
            assert reply == name.encode() + b":hi%d" % i
            served.append(name)
        assert sorted(set(served)) == ["g1", "g2"] and served.count("g1") == 3, served
        # A status from the backend (a trailers-only response) reaches the client.
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Fail")(b"x", timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and e.value.details() == "no such thing"
        # Server streaming: 2,000 messages.
        got = list(ch.unary_stream("/test.Echo/Stream")(b"2000", timeout=20))
        assert got == [b"%d" % i for i in range(2000)]
        # Client streaming: 3 MB up in 48 messages.
        parts = [os.urandom(65536) for _ in range(48)]
        assert ch.stream_unary("/test.Echo/Collect")(iter(parts), timeout=20) == b"%d" % (48 * 65536)
        # Bidirectional: each answer comes back while the call is open.
        msgs = [b"m%d" % i for i in range(50)]
        got = list(ch.stream_stream("/test.Echo/Chat")(iter(msgs), timeout=20))
        assert got == [m.upper() for m in msgs]
        # An unknown method: the backend's UNIMPLEMENTED.
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Nope")(b"x", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    wait_for(lambda: s.stdout().count("HTTP/2.0") >= 11, what="access log lines")
    assert '"POST /test.Echo/Echo HTTP/2.0" 200' in s.stdout()


def test_grpc_many_calls_share_sessions(procs, grpc_servers):
    port = free_port()
    procs.sluice(config(port, grpc_servers), wait_ports=[port])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        echo = ch.unary_unary("/test.Echo/Echo")
        futures = [echo.future(b"x", timeout=20) for _ in range(200)]
        replies = [f.result() for f in futures]
    assert sorted(set(r.split(b":")[0] for r in replies)) == [b"g1", b"g2"]
    # Two backends, one worker: one HTTP/2 connection to each carried them.
    out = subprocess.run(["ss", "-tn", "state", "established"], capture_output=True, text=True).stdout
    for s in grpc_servers:
        conns = [l for l in out.splitlines() if f"127.0.0.1:{s.port} " in l.split()[-1] + " "]
        assert len(conns) == 1, (s.origin_name, conns)


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/pt; fastcgi_temp_path {dir}/ft;
    uwsgi_temp_path {dir}/ut; scgi_temp_path {dir}/st;
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{ add_trailer grpc-status 0; default_type application/grpc; return 200 "ok"; }}
    }}
}}
"""


def test_thousands_of_streams_keep_the_session_window_open(procs, tmp_path):
    # NGINX as a cleartext HTTP/2 origin ends each stream (DATA, trailers,
    # END_STREAM) before sluice's exchange has read the response. Those
    # bytes must still go back into the session's window: a leak of a few
    # bytes per stream stalled the session after about 20,000 of them.
    oport, port = free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp_path, port=oport))
    origin = Proc(["/usr/sbin/nginx", "-p", f"{tmp_path}/", "-e", f"{tmp_path}/error.log", "-c", str(conf)],
                  "origin-nginx")
    procs.all.append(origin)
    wait_for(lambda: port_open(oport) or not origin.alive(), what="the nginx origin")
    procs.sluice("\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:",
        f"  - {{name: web, bind: 127.0.0.1:{port}, mode: http, http2: true, pool: o}}",
        "pools:", "  - name: o", "    http2: true", f"    backends: [{{address: 127.0.0.1:{oport}}}]"]) + "\n",
        wait_ports=[port])
    r = subprocess.run(["/usr/bin/h2load", "-n", "40000", "-c", "10", "-m", "10",
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=60)
    assert "40000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout[-1500:]


def test_grpc_backend_dies(procs, grpc_servers):
    port = free_port()
    procs.sluice(config(port, grpc_servers), wait_ports=[port])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        echo = ch.unary_unary("/test.Echo/Echo")
        assert {echo(b"a", timeout=10).split(b":")[0] for _ in range(4)} == {b"g1", b"g2"}
        grpc_servers[0].stop()
        # The session to g1 ends; calls go to g2 (a refused connect is retried).
        for _ in range(10):
            assert echo(b"b", timeout=10) == b"g2:b"


def test_grpc_to_tls_backends(procs, pki):
    # HTTP/2 over TLS to the backends: ALPN h2, the certificate verified.
    servers = [GrpcServer(n, tls=pki["a"]) for n in ("t1", "t2")]
    procs.all.extend(servers)
    port = free_port()
    procs.sluice(config(port, servers, pool_tls=f"{{ca_file: {pki['ca']}, server_name: a.test}}"),
                 wait_ports=[port])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        echo = ch.unary_unary("/test.Echo/Echo")
        assert {echo(b"s", timeout=10) for _ in range(4)} == {b"t1:s", b"t2:s"}
        assert list(ch.unary_stream("/test.Echo/Stream")(b"100", timeout=10))[-1] == b"99"
    # A certificate sluice cannot verify: no call goes through.
    port2 = free_port()
    s2 = procs.sluice(config(port2, servers, pool_tls=f"{{ca_file: {pki['ca']}, server_name: other.test}}"),
                      wait_ports=[port2])
    with grpc.insecure_channel(f"127.0.0.1:{port2}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Echo")(b"s", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "event=tls_handshake_failed" in s2.stderr()


def test_config_http2_pools(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("listeners:\n  - {name: t, bind: 127.0.0.1:1, mode: tcp, pool: p}\n"
                    "pools:\n  - name: p\n    http2: true\n    backends: [{address: 127.0.0.1:2}]\n"
                    "  - name: q\n    http2: true\n    send_proxy: v2\n    backends: [{address: 127.0.0.1:3}]\n")
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r.stderr
    assert "pool 'p' speaks HTTP/2 to its backends, which only an http listener can use" in r.stderr
    assert "send_proxy does not apply to an http2 pool" in r.stderr


def test_mirror_grpc_calls_to_an_http2_pool(procs, grpc_servers):
    # Calls to g1 are copied to g2 over HTTP/2 (a mirror pool with http2):
    # the client's answers are g1's, and g2 serves each call once.
    g1, g2 = grpc_servers
    port = free_port()
    cfg = "\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    http2: true",
        "    routes:", "      - match: {path_prefix: /test.Echo/}", "        pool: grpc",
        "        mirror: {pool: shadow}",
        "pools:",
        "  - name: grpc", "    http2: true", f"    backends: [{{address: {g1.address}}}]",
        "  - name: shadow", "    http2: true", f"    backends: [{{address: {g2.address}}}]"]) + "\n"
    procs.sluice(cfg, wait_ports=[port])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        echo = ch.unary_unary("/test.Echo/Echo")
        for i in range(10):
            reply, call = echo.with_call(b"m%d" % i, timeout=10)
            assert reply == b"g1:m%d" % i
            assert dict(call.trailing_metadata())["x-served-by"] == "g1"
    wait_for(lambda: g2.stdout().count("echo m") == 10, what="10 copies at g2")
    assert sorted(l for l in g2.stdout().splitlines() if l.startswith("echo")) == \
        sorted("echo m%d" % i for i in range(10))

