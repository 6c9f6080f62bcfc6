"""Edges of session affinity and consistent hashing through the real binary:
a sticky cookie sent twice or split over several Cookie fields (HTTP/1.1 and
HTTP/2), sessions over WebSocket and at weight 0, ring_hash keeping every
other backend's keys when a weighted backend leaves, and ip_hash treating an
IPv4-mapped IPv6 client as its IPv4 address."""
import asyncio
import http.client
import json
import re
import socket

import pytest

from harness import WebSocketEcho, free_port, recv_all, wait_for
from test_http2 import H2Client


def config(port, admin_port, backends, pool_extra="    sticky: {cookie: SRV}",
           listener_extra="", balance="round_robin", mode="http"):
    """One listener, one pool `app`. backends: (name, address[, weight])."""
    lines = ["workers: 2", "log: {level: info, access: off}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", f"    mode: {mode}", "    pool: app",
             listener_extra, "pools:", "  - name: app", f"    balance: {balance}",
             pool_extra, "    timeouts: {connect: 1s}", "    backends:"]
    for b in backends:
        w = f", weight: {b[2]}" if len(b) > 2 else ""
        lines.append(f"      - {{name: {b[0]}, address: {b[1]}{w}}}")
    return "\n".join(l for l in lines if l) + "\n"


def get(port, headers=(), path="/"):
    """One HTTP/1.1 GET, headers sent as given (repeats kept): (status,
    Set-Cookie values, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n".encode())
        data = recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    cookies = [l.split(":", 1)[1].strip() for l in lines[1:]
               if l.lower().startswith("set-cookie:")]
    return int(lines[0].split()[1]), cookies, body.decode().strip()


def sticky_ids(port, names):
    """Each backend's cookie value, from fresh clients (round_robin)."""
    ids = {}
    for _ in range(50):
        status, cookies, body = get(port)
        assert status == 200 and len(cookies) == 1, cookies
        ids[body] = re.match(r"SRV=([0-9a-f]{16});", cookies[0]).group(1)
        if set(ids) == set(names):
            return ids
    raise AssertionError(f"not every backend answered: {ids}")


def admin(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body)
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 200, (method, path, r.status)


def test_cookie_sent_twice_follows_the_one_naming_a_backend(procs):
    """A browser sends one cookie per Path (most specific first): a stale
    SRV of a path sluice no longer sets, or another pool's, comes before the
    session's. The session must still be followed, and not be moved with a
    new Set-Cookie on every request (which would never stick)."""
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, [(o.origin_name, o.address) for o in os_]),
                 wait_ports=[port])
    ids = sticky_ids(port, ["b1", "b2", "b3"])
    stale = "0123456789abcdef"
    assert stale not in ids.values()
    for name, value in ids.items():
        for headers in ([("Cookie", f"SRV={stale}; SRV={value}")],
                        [("Cookie", f"a=1; SRV=zz; x=2; SRV={value}")],
                        [("Cookie", f"SRV={stale}"), ("Cookie", f"b=2; SRV={value}")]):
            for _ in range(3):
                assert get(port, headers) == (200, [], name), headers
        # The first that names a backend wins, as a single cookie would.
        other = ids["b1" if name != "b1" else "b2"]
        assert get(port, [("Cookie", f"SRV={value}; SRV={other}")]) == (200, [], name)


def test_cookie_split_over_fields_http1_and_http2(procs):
    """Several Cookie header lines (HTTP/1.1) and several `cookie` fields
    (HTTP/2, RFC 9113 8.2.3) are one cookie list for stickiness."""
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, [(o.origin_name, o.address) for o in os_],
                        listener_extra="    http2: true"), wait_ports=[port])
    ids = sticky_ids(port, ["b1", "b2", "b3"])
    for name, value in ids.items():
        for _ in range(3):
            assert get(port, [("Cookie", "a=1"), ("Cookie", f"SRV={value}"),
                              ("Cookie", "z=9")]) == (200, [], name)
    c = H2Client(port)
    try:
        r = c.get("/")
        assert r["headers"][":status"] == "200"
        first = r["body"].decode().strip()
        assert r["headers"]["set-cookie"] == f"SRV={ids[first]}; Path=/; HttpOnly"
        for name, value in ids.items():
            for _ in range(3):
                r = c.get("/", headers=[("cookie", "a=1"), ("cookie", f"SRV={value}"),
                                        ("cookie", "z=9")])
                assert r["headers"][":status"] == "200"
                assert r["body"].decode().strip() == name
                assert "set-cookie" not in r["headers"]
    finally:
        c.close()


def test_weight_zero_keeps_sessions_and_takes_no_new_ones(procs):
    """As documented: a sticky session stays on its backend whatever its
    weight; weight 0 only stops new sessions."""
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, [(o.origin_name, o.address) for o in os_]),
                 wait_ports=[port])
    ids = sticky_ids(port, ["b1", "b2", "b3"])
    admin(aport, "PUT", "/api/v1/pools/app/backends/b2/weight", json.dumps({"weight": 0}))
    for _ in range(5):
        assert get(port, [("Cookie", f"SRV={ids['b2']}")]) == (200, [], "b2")
    for _ in range(9):
        status, cookies, body = get(port)
        assert status == 200 and body != "b2" and cookies == [f"SRV={ids[body]}; Path=/; HttpOnly"]


def test_websocket_upgrade_sets_the_sticky_cookie(procs):
    """A 101 is the final response of a WebSocket handshake: a client
    without a session gets the cookie there (browsers keep it), so that its
    next connection comes back; with a session, none is set."""
    websockets = pytest.importorskip("websockets")
    import websockets.server  # noqa: F401
    echoes = [WebSocketEcho(websockets) for _ in range(2)]
    try:
        port, aport = free_port(), free_port()
        procs.sluice(config(port, aport, [(f"w{i}", f"127.0.0.1:{e.port}")
                                          for i, e in enumerate(echoes)]), wait_ports=[port])
        handshake = ("GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n{}\r\n")

        def upgrade(cookie=""):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(handshake.format(f"Cookie: {cookie}\r\n" if cookie else "").encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    assert chunk, data
                    data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode()
            assert head.startswith("HTTP/1.1 101"), head
            return re.findall(r"(?im)^set-cookie: *(.*?)\r?$", head)

        cookies = upgrade()
        assert len(cookies) == 1 and re.fullmatch(r"SRV=[0-9a-f]{16}; Path=/; HttpOnly",
                                                  cookies[0]), cookies
        assert upgrade(cookies[0].split(";")[0]) == []
        # And it is the session's backend: a WebSocket echo round trip
        # through the cookie works end to end.
        asyncio.run(asyncio.wait_for(_ws_roundtrip(websockets, port, cookies[0].split(";")[0]),
                                     20))
    finally:
        for e in echoes:
            e.stop()


async def _ws_roundtrip(websockets, port, cookie):
    async with websockets.connect(f"ws://127.0.0.1:{port}/chat",
                                  extra_headers={"Cookie": cookie}) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"


def key_map(port, keys):
    """Which backend each X-Key goes to, over one keep-alive connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = {}
    try:
        for k in keys:
            c.request("GET", "/", headers={"X-Key": k})
            r = c.getresponse()
            body = r.read().decode().strip()
            assert r.status == 200, (k, r.status, body)
            out[k] = body
    finally:
        c.close()
    return out


def test_ring_hash_weighted_backend_leaving_moves_only_its_keys(procs):
    """Consistent hashing: when a backend goes away (here: disabled; DOWN
    is the same), the keys of every other backend stay where they were,
    weights or not. With unequal weights the ring used to be sized by the
    remaining backends' total weight, so every survivor's point count
    changed and several percent of their keys moved between them."""
    weights = [1, 1, 2, 3, 4]
    os_ = [procs.origin(f"b{i}") for i in range(len(weights))]
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, [(o.origin_name, o.address, w) for o, w in zip(os_, weights)],
                        pool_extra="    hash_key: header:x-key", balance="ring_hash"),
                 wait_ports=[port])
    keys = [f"user-{i}" for i in range(600)]
    before = key_map(port, keys)
    assert set(before.values()) == {o.origin_name for o in os_}
    admin(aport, "POST", "/api/v1/pools/app/backends/b4/disable")
    after = key_map(port, keys)
    moved = [k for k in keys if before[k] != "b4" and after[k] != before[k]]
    assert moved == [], f"{len(moved)} keys of the other backends moved"
    assert "b4" not in after.values()
    # A weight change (an operator, or a slow-start ramp) moves keys only
    # to or from the backend whose weight changed.
    admin(aport, "POST", "/api/v1/pools/app/backends/b4/enable")
    wait_for(lambda: key_map(port, keys[:50]) == {k: before[k] for k in keys[:50]},
             timeout=10, what="b4 back")
    admin(aport, "PUT", "/api/v1/pools/app/backends/b0/weight", json.dumps({"weight": 3}))
    after = key_map(port, keys)
    moved = [k for k in keys if after[k] != before[k] and "b0" not in (before[k], after[k])]
    assert moved == [], f"{len(moved)} keys moved between backends whose weight did not change"


def test_ip_hash_ipv4_mapped_client_hashes_as_ipv4(procs):
    """A client seen as ::ffff:a.b.c.d (here in a PROXY header from the L4
    in front) goes where the same client seen as a.b.c.d goes."""
    os_ = [procs.origin(f"b{i}") for i in range(4)]
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, [(o.origin_name, o.address) for o in os_],
                        pool_extra="", listener_extra="    proxy_protocol: accept",
                        balance="ip_hash", mode="tcp"), wait_ports=[port])

    def backend(proxy_line):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(proxy_line.encode() +
                      b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = recv_all(s)
        return data.partition(b"\r\n\r\n")[2].decode().strip()

    seen = set()
    for i in range(1, 25):
        ip = f"198.51.100.{i * 7}"
        v4 = backend(f"PROXY TCP4 {ip} 192.0.2.1 {40000 + i} 80\r\n")
        v6 = backend(f"PROXY TCP6 ::ffff:{ip} ::ffff:192.0.2.1 {50000 + i} 80\r\n")
        assert v4 == v6, ip
        seen.add(v4)
    assert len(seen) > 1


def test_reload_keeps_sessions_and_moves_those_of_a_removed_backend(procs):
    """The new process after a reload computes the same cookie values: the
    sessions of backends that stay stay; those of a backend removed from
    the config are balanced anew and get a new cookie."""
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port, aport = free_port(), free_port()
    s = procs.sluice(config(port, aport, [(o.origin_name, o.address) for o in os_]),
                     wait_ports=[port])
    ids = sticky_ids(port, ["b1", "b2", "b3"])
    with open(s.config, "w") as f:
        f.write(config(port, aport, [(o.origin_name, o.address) for o in os_[:2]]))
    s.reload()
    for name in ("b1", "b2"):
        for _ in range(3):
            assert get(port, [("Cookie", f"SRV={ids[name]}")]) == (200, [], name)
    status, cookies, body = get(port, [("Cookie", f"SRV={ids['b3']}")])
    assert status == 200 and body in ("b1", "b2")
    assert cookies == [f"SRV={ids[body]}; Path=/; HttpOnly"]
