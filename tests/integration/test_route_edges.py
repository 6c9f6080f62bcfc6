"""Edges of L7 routes and their actions (src/route/, src/config/route.c and
where src/proxy/http_message.c carries them out): header rewrites that must
not duplicate or break the framing of the forwarded message, `respond`
answers that must be well framed, and what `sluice check` refuses. Each
test is the regression test of a bug found there."""
import json
import re
import socket
import subprocess
import time

from harness import SLUICE, free_port
from test_http2 import H2Client


def config(port, origin_address, routes, listener_extra=""):
    lines = ["workers: 1", "drain_timeout: 5s", "log: {level: debug, access: stdout}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app"]
    if listener_extra:
        lines.append(listener_extra.rstrip("\n"))
    lines += ["    routes:", routes.rstrip("\n"),
              "pools:", "  - name: app", "    balance: round_robin",
              "    timeouts: {connect: 1s, upstream_response: 3s}", "    backends:",
              f"      - {{name: b1, address: {origin_address}}}"]
    return "\n".join(lines) + "\n"


def exchange(port, data, want_responses, timeout=10):
    """Send raw bytes on one connection; read until want_responses
    complete responses (Content-Length framed, or none for 204/304) came,
    the server closes, or timeout. Returns the raw bytes."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and out.count(b"HTTP/1.1 ") < want_responses:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            out += d
        # a little more, to catch bytes that should not be there
        s.settimeout(0.5)
        try:
            d = s.recv(65536)
            out += d
        except socket.timeout:
            pass
    return out


def check(tmp_path, text):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(text)
    return cfg, subprocess.run([SLUICE, "check", "-c", str(cfg)], capture_output=True, text=True,
                               timeout=30)


def echoed(port, target, host="front.example.com"):
    """GET target; the response's head (bytes) and the request headers
    the echo origin saw."""
    req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return head.lower(), json.loads(body)["headers"]


def values(headers, name):
    return [v for n, v in headers if n.lower() == name.lower()]


def test_set_headers_replace_the_forwarding_fields(procs):
    """A route's set_headers of a field sluice writes itself
    (X-Forwarded-Proto, X-Forwarded-For, X-Request-Id) replaces it, as
    HAProxy's set-header and NGINX's proxy_set_header do; so does
    set_response_headers of X-Request-Id. They were sent twice, sluice's
    own first: backends read `X-Forwarded-Proto: http` behind a route that
    says https."""
    o = procs.origin("b1")
    port = free_port()
    routes = ("      - match: {path_prefix: /rw/}\n        pool: app\n        strip_prefix: /rw\n"
              "        set_headers: {X-Forwarded-Proto: https, X-Request-Id: fixed-id,\n"
              "                      X-Forwarded-For: 192.0.2.7}\n"
              "        set_response_headers: {X-Request-Id: resp-id}\n")
    procs.sluice(config(port, o.address, routes), wait_ports=[port])
    head, h = echoed(port, "/rw/echo")
    assert values(h, "host") == ["front.example.com"], h
    assert values(h, "x-forwarded-proto") == ["https"], h
    assert values(h, "x-request-id") == ["fixed-id"], h
    assert values(h, "x-forwarded-for") == ["192.0.2.7"], h
    assert values(h, "x-forwarded-host") == ["front.example.com"], h
    assert head.count(b"\r\nx-request-id:") == 1 and b"x-request-id: resp-id" in head, head
    # a route without set_headers is unchanged
    head, h = echoed(port, "/echo")
    assert values(h, "host") == ["front.example.com"], h
    assert values(h, "x-forwarded-proto") == ["http"], h
    assert values(h, "x-forwarded-for") == ["127.0.0.1"], h
    assert len(values(h, "x-request-id")) == 1, h
    assert head.count(b"\r\nx-request-id:") == 1, head


def test_respond_204_and_304_carry_no_body(procs):
    """respond: {status: 204 (or 304), body: ...} wrote the body and a
    Content-Length after a status that has no content (RFC 9110 6.4.1): an
    HTTP/1.1 client read the body as the start of the next response, and an
    HTTP/2 client got the stream reset (PROTOCOL_ERROR)."""
    o = procs.origin("b1")
    port = free_port()
    routes = ('      - match: {path: /nc}\n        respond: {status: 204, body: "hello"}\n'
              '      - match: {path: /nm}\n        respond: {status: 304, body: "hello"}\n'
              '      - match: {path: /ping}\n        respond: {status: 200, body: "pong"}\n')
    procs.sluice(config(port, o.address, routes, listener_extra="    http2: true"),
                 wait_ports=[port])
    out = exchange(port, b"GET /nc HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /nm HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /ping HTTP/1.1\r\nHost: a\r\n\r\n", 3)
    parts = out.split(b"\r\n\r\n")
    assert parts[0].startswith(b"HTTP/1.1 204 "), out
    assert parts[1].startswith(b"HTTP/1.1 304 "), out
    assert parts[2].startswith(b"HTTP/1.1 200 "), out
    assert parts[3] == b"pong", out
    assert b"content-length" not in parts[0].lower(), out
    assert b"content-length" not in parts[1].lower(), out
    # HTTP/2 (prior knowledge): a clean 204 (it was reset), then the next stream
    c = H2Client(port)
    try:
        for path, status, body in (("/nc", "204", b""), ("/nm", "304", b""),
                                   ("/ping", "200", b"pong")):
            r = c.get(path)
            assert r["reset"] is None and r["headers"][":status"] == status, (path, r)
            assert r["body"] == body, (path, r)
            assert body or "content-length" not in r["headers"], (path, r)
    finally:
        c.close()


def test_check_refuses_rewrites_of_the_framing_fields(tmp_path):
    """remove_headers: [Content-Length] forwarded a request's body without
    its length: the backend read the body as a request of its own (request
    smuggling past every route). set_headers of Content-Length or
    Transfer-Encoding, and the response side's rewrites of them, desync
    the message the same way. `sluice check` refuses them at their
    position (the refusal itself came with a concurrent change to
    src/config/route.c, written_by_sluice)."""
    cases = [("remove_headers: [Content-Length]", "remove_headers"),
             ("set_headers: {Transfer-Encoding: chunked}", "set_headers"),
             ("set_headers: {content-length: '0'}", "set_headers"),
             ("remove_response_headers: [transfer-encoding]", "remove_response_headers"),
             ("set_response_headers: {Content-Length: '1'}", "set_response_headers")]
    for rule, key in cases:
        routes = f"      - match: {{path_prefix: /up/}}\n        pool: app\n        {rule}\n"
        cfg, r = check(tmp_path, config(free_port(), "127.0.0.1:9", routes))
        assert r.returncode == 1, (rule, r.stderr)
        assert re.search(rf"{re.escape(str(cfg))}:12:\d+: .*route #1: {key}: sluice writes",
                         r.stderr), (rule, r.stderr)
    # other fields are fine
    routes = ("      - match: {path_prefix: /up/}\n        pool: app\n"
              "        remove_headers: [X-Debug]\n        set_headers: {X-User: a}\n"
              "        set_response_headers: {Cache-Control: no-store}\n")
    _, r = check(tmp_path, config(free_port(), "127.0.0.1:9", routes))
    assert r.returncode == 0, r.stderr


def test_check_refuses_a_respond_body_that_cannot_be_sent(tmp_path, procs):
    """A respond body larger than the 16 KiB buffer a local answer is
    written to passed `sluice check`, and then every request of the route
    got 500. `sluice check` refuses it; a body that fits is served."""
    routes = f'      - match: {{path: /big}}\n        respond: {{status: 200, body: "{"x" * 20000}"}}\n'
    cfg, r = check(tmp_path, config(free_port(), "127.0.0.1:9", routes))
    assert r.returncode == 1, r.stderr
    assert re.search(rf"{re.escape(str(cfg))}:\d+:\d+: .*route #1: respond.body: 20000 bytes",
                     r.stderr), r.stderr

    o = procs.origin("b1")
    port = free_port()
    routes = f'      - match: {{path: /big}}\n        respond: {{status: 200, body: "{"x" * 15000}"}}\n'
    cfg, r = check(tmp_path, config(port, o.address, routes))
    assert r.returncode == 0, r.stderr
    procs.sluice(config(port, o.address, routes), wait_ports=[port])
    out = exchange(port, b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 1)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"x" * 15000, head


def test_check_refuses_a_host_that_can_never_match(tmp_path, procs):
    """match.host is compared with the request's host without its port
    (and an IPv6 address in brackets, as Host carries it), but a host with
    a port, or a bare IPv6 address, passed `sluice check` and then never
    matched: requests for example.com:8080 fell through to the next rule.
    `sluice check` refuses them; '[::1]' is accepted and matches."""
    for host in ("example.com:8080", "::1", "[::1]:80", "*.example.com:443"):
        routes = f'      - match: {{host: "{host}"}}\n        respond: {{status: 200}}\n'
        cfg, r = check(tmp_path, config(free_port(), "127.0.0.1:9", routes))
        assert r.returncode == 1, (host, r.stderr)
        assert re.search(rf"{re.escape(str(cfg))}:10:\d+: .*route #1: match.host: "
                         rf"'{re.escape(host)}' can never match", r.stderr), (host, r.stderr)

    o = procs.origin("b1")
    port = free_port()
    routes = ('      - match: {host: "[::1]"}\n        respond: {status: 200, body: "v6"}\n'
              '      - match: {host: "Example.COM"}\n        respond: {status: 200, body: "ex"}\n')
    procs.sluice(config(port, o.address, routes), wait_ports=[port])
    for host, want in (("[::1]:8080", b"v6"), ("[::1]", b"v6"), ("example.com:8080", b"ex"),
                       ("EXAMPLE.com.", b"ex"), ("other", b"b1\n")):
        out = exchange(port, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                             .encode(), 1)
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and body == want, (host, out)


def test_set_headers_host_replaces_the_clients(procs):
    """set_headers {Host: ...} replaces the client's Host, as NGINX's
    proxy_set_header Host and HAProxy's set-header Host do: one Host field,
    the route's, while routing and X-Forwarded-Host still go by the
    client's. It used to send two Host fields (a backend must answer 400)."""
    o = procs.origin("b1")
    port = free_port()
    routes = ("      - match: {host: front.example.com}\n        pool: app\n"
              "        set_headers: {host: backend.internal}\n")
    procs.sluice(config(port, o.address, routes), wait_ports=[port])
    _, h = echoed(port, "/echo")
    assert values(h, "host") == ["backend.internal"], h
    assert values(h, "x-forwarded-host") == ["front.example.com"], h
    assert "host=front.example.com" in values(h, "forwarded")[0], h
    # an absolute-form target's authority is replaced too
    _, h = echoed(port, "http://front.example.com/echo")
    assert values(h, "host") == ["backend.internal"], h
