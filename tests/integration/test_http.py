"""L7 HTTP/1.1 through the real binary, with curl and Python clients in front
of sluice-origin: routing, splits, keep-alive, pipelining, big bodies,
WebSocket, forwarding headers, slow clients and every error status."""
import asyncio
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from harness import SLUICE, WebSocketEcho, free_port, wait_for, websocket_echo_roundtrip


def http_config(port, pools, routes="", listener_extra="", default_pool="app", workers=1,
                log_format="combined"):
    """pools: {name: [(backend_name, address), ...]}"""
    lines = [f"workers: {workers}", "drain_timeout: 5s",
             f"log: {{level: debug, access: stdout, format: {log_format}}}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http"]
    if default_pool:
        lines.append(f"    pool: {default_pool}")
    if listener_extra:
        lines.append(listener_extra)
    if routes:
        lines.append("    routes:")
        lines.append(routes)
    lines.append("pools:")
    for name, backends in pools.items():
        lines += [f"  - name: {name}", "    balance: round_robin",
                  "    timeouts: {connect: 1s, upstream_response: 2s}", "    backends:"]
        lines += [f"      - {{name: {b}, address: {a}}}" for b, a in backends]
    return "\n".join(lines) + "\n"


def get(port, path="/", headers=None, method="GET", body=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def raw(port, data, timeout=5, read_all=True):
    """Send raw bytes; return everything until the server closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
                if not read_all:
                    break
        except socket.timeout:
            pass
        return out


@pytest.fixture
def origins(procs):
    return [procs.origin(n) for n in ("b1", "b2", "b3")]


ROUTES = """\
      - match: {path: /ping}
        respond: {status: 200, body: "pong\\n"}
      - match: {path_prefix: /old/}
        redirect: {location: /new/, status: 301}
      - match: {host: api.example.com}
        pool: p1
      - match: {host: "*.wild.test"}
        pool: p2
      - match: {path_regex: "^/v[0-9]+/"}
        pool: p3
      - match: {method: [DELETE]}
        pool: p1
      - match: {headers: {x-canary: "true"}}
        pool: p2
      - match: {cookies: {beta: "1"}}
        pool: p3
      - match: {query: {debug: "1"}}
        pool: p1
      - match: {path_prefix: /strip/}
        pool: p2
        strip_prefix: /strip
        set_headers: {x-added: "yes"}
        remove_headers: [x-secret]
        set_response_headers: {x-route: strip}
        remove_response_headers: [x-origin]
      - match: {path_prefix: /v1api/x}
        pool: p3
        rewrite_prefix: /e
"""


def routed_config(port, o):
    return http_config(port, {"app": [("b1", o[0].address)], "p1": [("b1", o[0].address)],
                              "p2": [("b2", o[1].address)], "p3": [("b3", o[2].address)]},
                       routes=ROUTES, default_pool=None)


def test_routing_on_every_condition(procs, origins):
    port = free_port()
    procs.sluice(routed_config(port, origins))
    assert get(port, "/ping")[2] == b"pong\n"
    st, h, _ = get(port, "/old/x")
    assert st == 301 and h["location"] == "/new/"
    assert get(port, "/", {"Host": "api.example.com"})[2] == b"b1\n"
    assert get(port, "/", {"Host": "API.Example.COM:8080"})[2] == b"b1\n"
    assert get(port, "/", {"Host": "a.b.wild.test"})[2] == b"b2\n"
    assert get(port, "/v2/users")[2] == b"b3\n"
    assert get(port, "/x", method="DELETE")[2] == b"b1\n"
    assert get(port, "/x", {"X-Canary": "true"})[2] == b"b2\n"
    assert get(port, "/x", {"Cookie": "a=2; beta=1"})[2] == b"b3\n"
    assert get(port, "/x?a=b&debug=1")[2] == b"b1\n"
    # No rule matches and the listener has no pool: 404.
    assert get(port, "/nothing")[0] == 404
    assert get(port, "/x", {"X-Canary": "false"})[0] == 404


def test_routing_on_the_client_address(procs, origins):
    # An allow list: /admin/ for 127.0.0.2 and 127.0.1.0/24 only, 403 for
    # anyone else. (IPv6 blocks: tests/unit/test_route.c.)
    port = free_port()
    routes = ("      - match: {path_prefix: /admin/, source: [127.0.0.2/32, 127.0.1.0/24]}\n"
              "        pool: p2\n"
              "      - match: {path_prefix: /admin/}\n"
              "        respond: {status: 403, body: \"forbidden\\n\"}\n")
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)],
                                    "p2": [("b2", origins[1].address)]}, routes=routes))

    def get_from(source, path):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    assert get_from("127.0.0.2", "/admin/x") == (200, b"b2\n")
    assert get_from("127.0.0.1", "/admin/x") == (403, b"forbidden\n")
    assert get_from("127.0.0.3", "/admin/x")[0] == 403
    assert get_from("127.0.1.77", "/admin/x") == (200, b"b2\n")
    assert get_from("127.0.0.1", "/other") == (200, b"b1\n")


def test_rewrites(procs, origins):
    port = free_port()
    procs.sluice(routed_config(port, origins))
    st, h, body = get(port, "/strip/echo?q=1", {"X-Secret": "s", "X-Keep": "k"})
    assert st == 200
    echo = json.loads(body)
    names = {k.lower(): v for k, v in echo["headers"]}
    assert echo["target"] == "/echo?q=1"
    assert names["x-added"] == "yes" and names["x-keep"] == "k" and "x-secret" not in names
    assert h["x-route"] == "strip" and "x-origin" not in h
    # /v1api/x + "cho": the matched prefix becomes /e, giving /echo.
    echo = json.loads(get(port, "/v1api/xcho?z")[2])
    assert echo["target"] == "/echo?z"



def status_of(port, target):
    """The status sluice answers a GET for target sent byte for byte."""
    out = raw(port, b"GET " + target.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return int(out.split(b" ", 2)[1])


def test_paths_are_normalised_before_routing_and_forwarding(procs, origins):
    """A rule on /admin/ cannot be walked around with dot segments, encoded
    unreserved characters or doubled slashes, and the backend gets the path
    the rule saw; the access log keeps the target as received."""
    port = free_port()
    deny = "      - match: {path_prefix: /admin/}\n        respond: {status: 403, body: \"no\\n\"}"
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}, routes=deny,
                                 log_format="json"))
    for target in ("/admin/x", "/x/../admin/x", "/./admin/x", "//admin/x", "/%61dmin/x",
                   "/%61%64%6D%69%6E/x", "/x/%2e%2E/admin/x", "/admin//x", "/y/./../admin/"):
        assert status_of(port, target) == 403, target
    # Forwarded as normalised: dot segments gone, slashes merged, %7E
    # decoded; an encoded slash and the query are left as they are.
    echo = json.loads(raw(port, b"GET /x/../echo//y/%2e/z%7e/a%2fb?q=%61/../ HTTP/1.1\r\n"
                               b"Host: t\r\nConnection: close\r\n\r\n").split(b"\r\n\r\n", 1)[1])
    assert echo["target"] == "/echo/y/z~/a%2Fb?q=%61/../"
    # Climbing above the root, or a broken %-encoding: 400, logged with why.
    assert status_of(port, "/../echo") == 400
    assert status_of(port, "/echo/%2e%2e/%2e%2e/x") == 400
    assert status_of(port, "/echo%zz") == 400
    wait_for(lambda: "the path climbs above the root" in s.stderr(), what="why in the log")
    assert "bad percent-encoding in the path" in s.stderr()
    wait_for(lambda: '"target":"/x/../admin/x"' in s.stdout(), what="raw target in the access log")



def test_normalised_path_survives_keeping_a_body_for_retries(procs, origins):
    """A body kept for replay (retries) moves the request to a larger buffer
    and parses its head again there; the backend must still get the
    normalised path, not the one received."""
    port = free_port()
    cfg = http_config(port, {"app": [("b1", origins[0].address)]}).replace(
        "    timeouts: {connect: 1s, upstream_response: 2s}",
        "    timeouts: {connect: 1s, upstream_response: 2s}\n"
        "    retries: {attempts: 2, retry_on: [reset, 502], retry_buffer: 64k}")
    procs.sluice(cfg)
    body = b"x" * 40000          # more than a 16 KiB pool buffer, less than retry_buffer
    out = raw(port, b"PUT /x/../echo//a%%7e HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body)
    echo = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert echo["target"] == "/echo/a~" and echo["body_length"] == len(body)

def test_path_normalisation_options(procs, origins):
    """escaped_slashes: reject refuses %2F; normalize_path and merge_slashes
    false pass the path through byte for byte."""
    strict, plain = free_port(), free_port()
    pools = {"app": [("b1", origins[0].address)]}
    procs.sluice(http_config(strict, pools, listener_extra="    escaped_slashes: reject"))
    assert status_of(strict, "/echo/a%2fb") == 400
    assert status_of(strict, "/echo/a%5Cb") == 400
    assert status_of(strict, "/echo/a%2eb") == 200
    procs.sluice(http_config(plain, pools, listener_extra="    normalize_path: false\n    merge_slashes: false"))
    echo = json.loads(raw(plain, b"GET /echo/./a//b/../%7e%zz HTTP/1.1\r\nHost: t\r\n"
                                 b"Connection: close\r\n\r\n").split(b"\r\n\r\n", 1)[1])
    assert echo["target"] == "/echo/./a//b/../%7e%zz"

def test_split_ratio(procs, origins):
    port = free_port()
    routes = "      - split: [{pool: stable, weight: 90}, {pool: canary, weight: 10}]\n"
    procs.sluice(http_config(port, {"stable": [("b1", origins[0].address)],
                                    "canary": [("b2", origins[1].address)]},
                             routes=routes, default_pool=None))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    counts = {}
    n = 10000
    for _ in range(n):
        c.request("GET", "/")
        body = c.getresponse().read()
        counts[body] = counts.get(body, 0) + 1
    c.close()
    canary = counts.get(b"b2\n", 0) / n
    assert abs(canary - 0.10) < 0.015, counts


def test_keepalive_reuses_upstream_connections(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(200):
        c.request("GET", "/x")
        assert c.getresponse().read() == b"b1\n"
    c.close()
    stats = json.loads(get(origins[0].port, "/stats")[2])   # direct to the origin
    # 200 requests through sluice plus this /stats: sluice used one upstream
    # connection for all of them (plus our direct one).
    assert stats["requests"] >= 201
    assert stats["connections"] <= 3, stats


def test_pipelined_requests_answered_in_order(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    reqs = b"".join(b"GET /delay/%d HTTP/1.1\r\nHost: x\r\n\r\n" % d for d in (200, 0, 100))
    reqs += b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(port, reqs)
    assert out.count(b"HTTP/1.1 200") == 4
    assert out.index(b"/delay") if b"/delay" in out else True
    # The /echo answer (last) names its target; it comes after the three others.
    assert out.rfind(b'"target":"/echo"') > out.rfind(b"b1\n" * 1)


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M).group(1))


def test_1gb_download_and_upload_identical(procs, origins):
    """Byte-identical both ways, with bounded memory: sluice's peak RSS
    grows by less than 32 MB while 2 GB go through it."""
    port = free_port()
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    assert get(port, "/")[0] == 200
    rss0 = peak_rss_kb(s.pid)
    n = 1000 * 1000 * 1000
    # Download: the origin's /bytes/N body is "abc...z" repeated.
    pattern = b"abcdefghijklmnopqrstuvwxyz"
    block = pattern * (1 << 16)
    want = hashlib.sha256()
    left = n
    while left:
        k = min(left, len(block))
        want.update(block[:k])
        left -= k
    r = subprocess.run(["curl", "-s", "--fail", f"http://127.0.0.1:{port}/bytes/{n}"],
                       stdout=subprocess.PIPE, timeout=120)
    assert r.returncode == 0
    assert len(r.stdout) == n and hashlib.sha256(r.stdout).hexdigest() == want.hexdigest()
    del r
    # Upload through sluice: the origin hashes what it received.
    with tempfile.NamedTemporaryFile() as f:
        chunk = os.urandom(1 << 20)
        h = hashlib.sha256()
        for _ in range(1000):
            f.write(chunk)
            h.update(chunk)
        f.flush()
        r = subprocess.run(["curl", "-s", "--fail", "--data-binary", f"@{f.name}",
                            "-H", "Content-Type: application/octet-stream",
                            f"http://127.0.0.1:{port}/echo"], stdout=subprocess.PIPE, timeout=180)
    echo = json.loads(r.stdout)
    assert echo["body_length"] == 1000 * (1 << 20)
    assert echo["body_sha256"] == h.hexdigest()
    grown = peak_rss_kb(s.pid) - rss0
    assert grown < 32 * 1024, f"peak RSS grew by {grown} kB"


def test_chunked_upload(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    body = os.urandom(300000)
    chunks = b"".join(b"%x;ext=1\r\n" % len(body[i:i + 7000]) + body[i:i + 7000] + b"\r\n"
                      for i in range(0, len(body), 7000))
    req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks +
           b"0\r\nX-Trailer: t\r\n\r\n"
           b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(port, req)
    assert hashlib.sha256(body).hexdigest().encode() in out
    assert out.count(b"HTTP/1.1 200") == 2


def test_websocket_echo(procs):
    websockets = pytest.importorskip("websockets")
    import websockets.server  # noqa: F401
    origin = WebSocketEcho(websockets)
    port = free_port()
    procs.sluice(http_config(port, {"app": [("ws", f"127.0.0.1:{origin.port}")]}))

    try:
        asyncio.run(asyncio.wait_for(
            websocket_echo_roundtrip(websockets, f"ws://127.0.0.1:{port}/chat"), 20))
    finally:
        origin.stop()



def test_websocket_access_line_names_its_own_request(procs, origins):
    """A tunnel drops the buffer its request head was read into, and its
    access line is written when it ends: other requests meanwhile reuse that
    buffer, and the line must still name the WebSocket's own request."""
    websockets = pytest.importorskip("websockets")
    origin = WebSocketEcho(websockets)
    port = free_port()
    s = procs.sluice(http_config(port, {"app": [("ws", f"127.0.0.1:{origin.port}")],
                                        "o": [("b1", origins[0].address)]},
                                 routes="      - match: {path_prefix: /o/}\n        pool: o",
                                 log_format="json"))

    async def session():
        async with websockets.connect(f"ws://127.0.0.1:{port}/chat?room=7",
                                      user_agent_header="ws-tester") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            for i in range(100):     # each reads its head into a pool buffer
                assert get(port, "/o/" + "z" * 300 + str(i), {"User-Agent": "churn"})[0] == 200
            await ws.send("bye")
            assert await ws.recv() == "bye"
    try:
        asyncio.run(asyncio.wait_for(session(), 30))
    finally:
        origin.stop()
    wait_for(lambda: '"status":101' in s.stdout(), what="the WebSocket's access line")
    line = json.loads([ln for ln in s.stdout().splitlines() if '"status":101' in ln][0])
    assert line["target"] == "/chat?room=7" and line["method"] == "GET"
    assert line["host"] == f"127.0.0.1:{port}" and line["user_agent"] == "ws-tester"

def test_forwarded_headers_untrusted_and_trusted(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    echo = json.loads(get(port, "/echo", {"X-Forwarded-For": "6.6.6.6",
                                          "X-Real-IP": "6.6.6.6",
                                          "X-Forwarded-Host": "evil.test",
                                          "Forwarded": "for=6.6.6.6;host=evil.test",
                                          "X-Request-Id": "forged"})[2])
    h = {k.lower(): v for k, v in echo["headers"]}
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert "x-real-ip" not in h
    assert h["x-request-id"] != "forged" and len(h["x-request-id"]) == 32
    assert h["x-forwarded-proto"] == "http"
    # -Host and RFC 7239 Forwarded describe this hop; a host with a port is quoted.
    assert h["x-forwarded-host"] == f"127.0.0.1:{port}"
    assert h["forwarded"] == f'for=127.0.0.1;host="127.0.0.1:{port}";proto=http'
    assert [k.lower() for k, _ in echo["headers"]].count("forwarded") == 1
    echo = json.loads(raw(port, b"GET /echo HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
                      .split(b"\r\n\r\n", 1)[1])
    h = {k.lower(): v for k, v in echo["headers"]}
    assert h["forwarded"] == "for=127.0.0.1;host=www.example.com;proto=http"

    port2 = free_port()
    procs.sluice(http_config(port2, {"app": [("b1", origins[0].address)]},
                             listener_extra="    trusted_proxies: [127.0.0.0/8]"))
    echo = json.loads(get(port2, "/echo", {"X-Forwarded-For": "203.0.113.9",
                                           "X-Forwarded-Host": "shop.example",
                                           "Forwarded": 'for="[2001:db8::7]";proto=https',
                                           "X-Request-Id": "abc123"})[2])
    h = {k.lower(): v for k, v in echo["headers"]}
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-request-id"] == "abc123"
    # From a trusted proxy: its Forwarded list gets this hop appended, and
    # its X-Forwarded-Host (the host the client asked for) is kept.
    assert h["forwarded"] == f'for="[2001:db8::7]";proto=https, for=127.0.0.1;host="127.0.0.1:{port2}";proto=http'
    assert h["x-forwarded-host"] == "shop.example"




def test_forwarded_for_an_ipv6_client_is_quoted(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}).replace(
        f"bind: 127.0.0.1:{port}", f"bind: '[::1]:{port}'"))
    with socket.create_connection(("::1", port), timeout=5) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
        out = b""
        while (d := s.recv(65536)):
            out += d
    h = {k.lower(): v for k, v in json.loads(out.split(b"\r\n\r\n", 1)[1])["headers"]}
    assert h["x-forwarded-for"] == "::1"
    assert h["forwarded"] == 'for="[::1]";host="[::1]";proto=http'
    assert h["x-forwarded-host"] == "[::1]"

UNDERSCORED = {"X_Forwarded_For": "6.6.6.6", "x_forwarded_proto": "https", "X_Real_IP": "6.6.6.6",
               "X_Forwarded_Host": "evil.test", "X_Request_Id": "forged",
               "X_Client_Cert_Subject": "CN=admin", "X_User": "mallory", "X_Other": "kept"}


def echoed_headers(port, headers):
    """The request's fields as the origin received them: [(name, value)]."""
    return json.loads(get(port, "/echo", headers)[2])["headers"]


def test_underscore_spellings_cannot_pose_as_forwarding_headers(procs, origins):
    """CGI-style backends read X_Forwarded_For as X-Forwarded-For: the
    underscore spellings of what sluice writes or vouches for never reach
    the backend, from untrusted and trusted peers alike; other underscore
    fields follow headers_with_underscores (allow, drop, reject)."""
    pools = {"app": [("b1", origins[0].address)]}
    route = "      - match: {path_prefix: /}\n        pool: app\n        set_headers: {X-User: alice}"
    allow, trusted, drop, reject = free_port(), free_port(), free_port(), free_port()
    procs.sluice(http_config(allow, pools, routes=route))
    procs.sluice(http_config(trusted, pools, routes=route,
                             listener_extra="    trusted_proxies: [127.0.0.0/8]"))
    procs.sluice(http_config(drop, pools, listener_extra="    headers_with_underscores: drop"))
    procs.sluice(http_config(reject, pools, listener_extra="    headers_with_underscores: reject"))
    for port in (allow, trusted):
        got = echoed_headers(port, UNDERSCORED)
        names = {k for k, _ in got}
        assert names & set(UNDERSCORED) == {"X_Other"}, got
        h = {k.lower(): v for k, v in got}
        assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-proto"] == "http"
        assert h["x-user"] == "alice" and h["x_other"] == "kept"
    # The hyphen spelling from a trusted peer is still believed.
    h = {k.lower(): v for k, v in echoed_headers(trusted, {"X-Forwarded-For": "203.0.113.9",
                                                           "X_Forwarded_For": "6.6.6.6"})}
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    got = echoed_headers(drop, {"X_Other": "x", "X-Fine": "y"})
    assert [k for k, _ in got if k in ("X_Other", "X-Fine")] == ["X-Fine"], got
    assert get(reject, "/echo", {"X_Other": "x"})[0] == 400
    assert get(reject, "/echo", {"X-Other": "x"})[0] == 200


def test_expect_100_continue(procs, origins):
    """The client waits for 100 Continue before sending its body: the
    backend's 100 comes through, then the final answer. A body sluice will
    refuse (max_body_size) is refused at once, with no 100 and no wait."""
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]},
                             listener_extra="    max_body_size: 100k"))
    body = os.urandom(50000)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        interim = b""
        while b"\r\n\r\n" not in interim:
            d = s.recv(4096)
            assert d, "closed before 100 Continue"
            interim += d
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        s.sendall(body + b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        rest = interim.split(b"\r\n\r\n", 1)[1]
        while (d := s.recv(65536)):
            rest += d
    first, second = rest.split(b"HTTP/1.1 200", 2)[1:]
    assert json.loads(first.split(b"\r\n\r\n", 1)[1])["body_length"] == len(body)
    assert b'"method":"GET"' in second.replace(b" ", b"")
    t0 = time.monotonic()
    out = raw(port, b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 200000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in out
    assert time.monotonic() - t0 < 2

def test_hop_by_hop_headers_not_forwarded(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    echo = json.loads(get(port, "/echo", {"Connection": "keep-alive, x-drop",
                                          "X-Drop": "1", "Keep-Alive": "timeout=5",
                                          "TE": "trailers", "X-Stay": "1",
                                          "Proxy-Authorization": "Basic dTpw",
                                          "Proxy-Connection": "keep-alive",
                                          "Proxy": "http://evil.test:8080",
                                          "Proxyish": "1"})[2])
    names = {k.lower() for k, _ in echo["headers"]}
    assert "x-drop" not in names and "keep-alive" not in names and "te" not in names
    # Proxy-* is for a proxy; "Proxy" is httpoxy (HTTP_PROXY in a CGI backend).
    assert not {"proxy-authorization", "proxy-connection", "proxy"} & names
    assert "x-stay" in names and "proxyish" in names


def test_slowloris_clients_do_not_stop_a_normal_client(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]},
                             listener_extra="    timeouts: {client_header: 1s}"))
    slow = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")   # never finishes its head
        slow.append(s)
    t0 = time.monotonic()
    for _ in range(20):
        assert get(port, "/")[0] == 200
    assert time.monotonic() - t0 < 2
    # The slow ones get 408 once client_header runs out.
    time.sleep(1.3)
    got408 = 0
    for s in slow:
        s.settimeout(2)
        try:
            if s.recv(100).startswith(b"HTTP/1.1 408"):
                got408 += 1
        except OSError:
            pass
        s.close()
    assert got408 == 100


ERRORS = [
    # (raw request, expected status)
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
]


def test_error_statuses(procs, origins):
    port = free_port()
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]},
                                 listener_extra="    max_body_size: 1m"))
    for req, status in ERRORS:
        out = raw(port, req)
        assert out.startswith(b"HTTP/1.1 %d " % status), (req[:60], out[:80])
    # Nothing of those requests reached the origin.
    stats = json.loads(get(origins[0].port, "/stats")[2])
    assert stats["requests"] == 1
    assert "event=bad_request" in s.stderr()


def test_408_on_slow_head_and_502_503_504(procs, origins):
    dead = free_port()
    port = free_port()
    routes = ("      - match: {path_prefix: /dead}\n        pool: dead\n"
              "      - match: {path_prefix: /none}\n        pool: none\n")
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)],
                                    "dead": [("d", f"127.0.0.1:{dead}")],
                                    "none": [("n", f"127.0.0.1:{dead}")]},
                             routes=routes,
                             listener_extra="    timeouts: {client_header: 500ms}"))
    # 408: a head that does not finish in time.
    out = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert out.startswith(b"HTTP/1.1 408 ")
    # 502: the only backend refuses.
    assert get(port, "/dead")[0] == 502
    # 504: the backend takes longer than upstream_response (2s).
    t0 = time.monotonic()
    assert get(port, "/delay/3000")[0] == 504
    assert 1.8 < time.monotonic() - t0 < 3.0


def test_503_when_no_backend_is_up(procs):
    port = free_port()
    dead = free_port()
    cfg = http_config(port, {"app": [("d", f"127.0.0.1:{dead}")]})
    cfg = cfg.replace("    backends:", "    health_check: {type: tcp, interval: 100ms, timeout: 50ms,"
                      " healthy_threshold: 1, unhealthy_threshold: 1}\n    backends:")
    s = procs.sluice(cfg)
    # Backends start DOWN until their first check passes; sluice ran the
    # first checks before it started serving.
    assert "event=health_initial pool=app backend=d result=fail" in s.stderr()
    st, h, _ = get(port, "/")
    assert st == 503 and h.get("retry-after") == "1"


def test_dead_backend_costs_client_nothing(procs, origins):
    dead = free_port()
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address),
                                            ("d", f"127.0.0.1:{dead}")]}))
    for _ in range(50):
        assert get(port, "/")[0] == 200


def test_json_access_log(procs, origins):
    port = free_port()
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]},
                                 log_format="json"))
    get(port, "/some/path?x=1", {"User-Agent": "tester \"quoted\""})
    wait_for(lambda: '"target":"/some/path?x=1"' in s.stdout(), what="json access line")
    line = [l for l in s.stdout().splitlines() if "/some/path" in l][0]
    rec = json.loads(line)
    assert rec["status"] == 200 and rec["pool"] == "app" and rec["backend"] == "b1"
    assert rec["user_agent"] == 'tester "quoted"'
    assert len(rec["request_id"]) == 32 and rec["total_ms"] >= rec["response_ms"]


def test_client_reset_during_a_slow_answer_is_noticed(procs, origins):
    """A one-shot client socket joins the epoll set only when sluice waits
    on it, or after 100 ms waiting on the upstream: a client that resets
    while the backend is slow is still noticed long before the answer."""
    port = free_port()
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]},
                                 log_format="json"))
    # One-shot requests, never registered; they leave an idle upstream
    # connection, so the next request is sent at once and sluice waits on
    # the upstream alone.
    for _ in range(20):
        assert get(port, "/", {"Connection": "close"})[0] == 200
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"GET /delay/1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.4)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()   # RST
    wait_for(lambda: '"target":"/delay/1500"' in s.stdout(), timeout=1.0,
             what="the exchange ended by the reset, before the backend answered")
    rec = json.loads([l for l in s.stdout().splitlines() if "/delay/1500" in l][0])
    assert rec["end"] == "client_reset" and rec["total_ms"] < 1000
    # Keep-alive requests: registered once sluice waits for the next one.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(5):
        conn.request("GET", "/delay/150")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"b1\n"
    conn.close()


def test_redirects_built_from_the_request(procs, origins):
    """redirect with scheme/host/port keeps the request's path and query
    (HAProxy's `redirect scheme https`, NGINX's `return 301
    https://$host$request_uri`), after the route's path rewrite."""
    port = free_port()
    routes = """\
      - match: {host: old.example}
        redirect: {host: new.example, scheme: https, status: 308}
      - match: {path_prefix: /docs/}
        redirect: {scheme: https, status: 301}
        rewrite_prefix: /manual/
      - match: {path_prefix: /alt/}
        redirect: {port: 8443}
      - match: {path_prefix: /}
        redirect: {scheme: https}"""
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}, routes=routes))

    def location(req):
        out = raw(port, req)
        head = out.split(b"\r\n\r\n", 1)[0].decode()
        status = int(head.split(" ", 2)[1])
        loc = [l.split(": ", 1)[1] for l in head.split("\r\n") if l.lower().startswith("location:")]
        return status, loc[0] if loc else None

    assert location(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: www.example:8080\r\nConnection: close\r\n\r\n") == \
        (302, "https://www.example/a/b?x=1&y=%20")
    assert location(b"GET /q? HTTP/1.1\r\nHost: old.example\r\nConnection: close\r\n\r\n") == \
        (308, "https://new.example/q?")
    assert location(b"GET /docs/intro HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n") == \
        (301, "https://[::1]/manual/intro")
    assert location(b"GET /alt/x HTTP/1.1\r\nHost: h.example\r\nConnection: close\r\n\r\n") == \
        (302, "http://h.example:8443/alt/x")
    # An absolute-form request: its authority is the host.
    assert location(b"GET http://abs.example:81/p HTTP/1.1\r\nHost: abs.example:81\r\nConnection: close\r\n\r\n") == \
        (302, "https://abs.example/p")
    # HTTP/1.0 without Host: nothing to redirect to.
    assert location(b"GET /a HTTP/1.0\r\n\r\n") == (400, None)
    # curl follows nothing here, but sees the same.
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                        f"http://127.0.0.1:{port}/docs/x?k=v"], capture_output=True, text=True,
                       timeout=10)
    assert r.stdout == "301 https://127.0.0.1/manual/x?k=v"


def test_max_connections_holds_the_rest_in_the_backlog(procs, origins):
    """listeners[].max_connections: at the limit sluice stops accepting, so
    a further client waits in the kernel's backlog (not refused, not reset)
    and is served as soon as an open connection closes; two workers share
    the one count."""
    port, admin = free_port(), free_port()
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}, workers=2,
                                 listener_extra="    max_connections: 2")
                     + f"admin: {{listen: 127.0.0.1:{admin}}}\n")

    def open_keepalive():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"b1\n"
        return c

    def answered(socks, wait):
        """The sockets of socks that got a response head within wait s."""
        got, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            for w in socks:
                if w in got:
                    continue
                w.settimeout(0.02)
                try:
                    data = w.recv(100)
                except socket.timeout:
                    continue
                assert data.startswith(b"HTTP/1.1 200"), data
                got.append(w)
        return got

    held = [open_keepalive(), open_keepalive()]
    waiting = []
    for _ in range(3):     # keep-alive: served, each keeps its slot
        w = socket.create_connection(("127.0.0.1", port), timeout=5)
        w.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.append(w)
    assert answered(waiting, 0.8) == []          # connected (backlog), not accepted
    held.pop().close()                           # one slot frees: one is served
    first = answered(waiting, 1.5)
    assert len(first) == 1, first
    held.pop().close()
    second = answered([w for w in waiting if w not in first], 1.5)
    assert len(second) == 1, second
    first[0].close()
    assert len(answered([w for w in waiting if w not in first + second], 1.5)) == 1
    for w in waiting:
        w.close()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    m = re.search(r'^sluice_listener_full_total\{listener="web"\} (\d+)$', metrics, re.M)
    assert m and int(m.group(1)) >= 1, metrics
    assert "event=listener_full listener=web max_connections=2" in s.stdout() + s.stderr()


def test_check_warns_about_shadowed_routes(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(http_config(free_port(), {"app": [("b1", "127.0.0.1:9")]},
                               routes="      - match: {path_prefix: /api/}\n        pool: app\n"
                                      "      - match: {path_prefix: /api/v2/}\n        pool: app\n"))
    r = subprocess.run([SLUICE, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0
    assert f"{cfg}:" in r.stderr and "warning: route #2 can never match" in r.stderr, r.stderr



def test_check_warns_about_paths_no_request_can_have(tmp_path):
    cfg = tmp_path / "s.yaml"
    routes = ("      - match: {path: /a/../b}\n        pool: app\n"
              "      - match: {path_prefix: //admin/}\n        pool: app\n"
              "      - match: {path_prefix: /ok/}\n        pool: app\n")
    cfg.write_text(http_config(free_port(), {"app": [("b1", "127.0.0.1:9")]}, routes=routes))
    r = subprocess.run([SLUICE, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0
    assert re.search(rf"{re.escape(str(cfg))}:\d+:\d+: warning: route #1 can never match: its path "
                     r"'/a/\.\./b' is not normalised", r.stderr), r.stderr
    assert "route #2 can never match: its path '//admin/'" in r.stderr
    assert "route #3" not in r.stderr
    # Paths passed through as they are: nothing to warn about.
    cfg.write_text(http_config(free_port(), {"app": [("b1", "127.0.0.1:9")]}, routes=routes,
                               listener_extra="    normalize_path: false\n    merge_slashes: false"))
    r = subprocess.run([SLUICE, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr

def test_http10_client(procs, origins):
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    out = raw(port, b"GET /bytes/10 HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"abcdefghij")


def test_sigterm_drains_http(procs, origins):
    import signal
    port = free_port()
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}))
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    idle.request("GET", "/")
    assert idle.getresponse().read() == b"b1\n"      # now an idle keep-alive connection
    result = {}

    def slow():
        result["r"] = get(port, "/delay/800")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    s.send_signal(signal.SIGTERM)
    t.join(5)
    status, headers, body = result["r"]
    assert status == 200 and body == b"b1\n"
    assert headers.get("connection") == "close"
    # The idle keep-alive connection was closed by the drain.
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, OSError)):
        idle.request("GET", "/")
        idle.getresponse().read()
    assert s.p.wait(5) == 0


def test_sigterm_under_load_no_client_sees_a_reset(procs, origins):
    import signal
    port = free_port()
    s = procs.sluice(http_config(port, {"app": [("b1", origins[0].address),
                                                ("b2", origins[1].address)]}, workers=2))
    stop = time.monotonic() + 2.0
    errors, done = [], []

    def client():
        # Each request on a fresh keep-alive connection until sluice says
        # Connection: close or refuses new connections: both are clean.
        while time.monotonic() < stop:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.connect()
            except ConnectionRefusedError:
                return
            try:
                while True:
                    c.request("GET", "/delay/5")
                    r = c.getresponse()
                    r.read()
                    done.append(r.status)
                    if r.getheader("connection") == "close":
                        break
            except (ConnectionResetError, http.client.RemoteDisconnected,
                    BrokenPipeError) as e:
                errors.append(repr(e))
                return
            finally:
                c.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.6)
    s.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(10)
    assert errors == [], errors[:5]
    assert done and all(st == 200 for st in done)
    assert s.p.wait(10) == 0


def test_error_answer_survives_an_unread_body(procs, origins):
    """A 413 sent before the client finished its body: sluice shuts its side
    and drops the rest for a moment (a lingering close) instead of closing at
    once, which would reset the connection and could destroy the answer
    before the client reads it."""
    port = free_port()
    procs.sluice(http_config(port, {"app": [("b1", origins[0].address)]}).replace(
        "    pool: app\n", "    pool: app\n    max_body_size: 1k\n", 1))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n")
            time.sleep(0.05)                 # the 413 is on its way
            chunk = b"x" * 65536
            for _ in range(61):              # the body keeps coming after the answer
                s.sendall(chunk)
            data = s.recv(65536)
            assert data.startswith(b"HTTP/1.1 413 "), data[:80]
