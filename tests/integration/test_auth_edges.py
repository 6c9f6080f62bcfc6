"""Auth and rate limits at the edge, at their limits: JWT claims of the
wrong type, strings that a C string cannot hold, NumericDates at the edge
of 64 bits, a second Authorization field, and the same decisions over
HTTP/2 as over HTTP/1.1."""
import base64
import hashlib
import hmac
import http.client
import json
import re
import socket
import struct
import subprocess
import time
import urllib.request

import pytest

from harness import free_port, recv_all, wait_for

SECRET = b"0123456789abcdef0123456789abcdef-edges"
CURL = "/usr/bin/curl"
OPENSSL = "/usr/bin/openssl"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256(claims, header=None, raw_payload=None):
    """An HS256 token over SECRET; raw_payload: the payload's JSON text as is."""
    h = b64u(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64u(raw_payload.encode() if raw_payload is not None else json.dumps(claims).encode())
    data = f"{h}.{p}".encode()
    return f"{h}.{p}.{b64u(hmac.new(SECRET, data, hashlib.sha256).digest())}"


@pytest.fixture
def secret(tmp_path):
    p = tmp_path / "secret"
    p.write_bytes(SECRET + b"\n")
    return p


def config(port, origin, auth, extra=""):
    return "\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app", f"    auth: {auth}",
        extra,
        "pools:", "  - name: app", "    backends:", f"      - {{name: b1, address: {origin.address}}}",
    ]) + "\n"


def status(port, tok=None, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Authorization": f"Bearer {tok}"} if tok else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def raw_request(port, head):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())
        data = recv_all(s)
    return int(data.split(b" ", 2)[1]), data


def failures(s, why):
    return [l for l in s.log_lines("auth_failed") if f'why="{why}"' in l]


def test_numeric_dates_of_another_type_refuse_the_token(procs, secret):
    """exp and nbf are NumericDates (RFC 7519 2): given as a string or null
    they refuse the token, as an exponent does, instead of reading as a
    token without them (an expired token would pass forever)."""
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, f"{{type: jwt, secret_file: {secret}}}"))
    now = int(time.time())
    assert status(port, hs256({"sub": "ann", "exp": now + 600, "nbf": now - 10}))[0] == 200
    bad = [{"exp": str(now - 3600)}, {"exp": None}, {"exp": True}, {"exp": [now + 600]},
           {"nbf": str(now + 3600)}, {"nbf": {"at": now + 3600}}]
    for claims in bad:
        assert status(port, hs256({"sub": "ann", **claims}))[0] == 401, claims
    wait_for(lambda: len(failures(s, "malformed claims")) >= len(bad), what="failures logged")


def test_a_nul_in_a_claim_does_not_cut_it_short(procs, secret):
    """A JSON string may hold "\\u0000"; sluice's C strings cannot. "api\\u0000x"
    is not the audience "api", "iss\\u0000x" not the issuer "iss", and a
    member named "exp\\u0000" is not exp."""
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, f"{{type: jwt, secret_file: {secret}, issuer: iss, "
                                     "audience: api}"))
    now = int(time.time())
    good = {"iss": "iss", "aud": "api", "exp": now + 600}
    assert status(port, hs256(good))[0] == 200
    assert status(port, hs256({**good, "aud": "api\u0000evil"}))[0] == 401
    assert status(port, hs256({**good, "aud": ["web", "api\u0000"]}))[0] == 401
    assert status(port, hs256({**good, "iss": "iss\u0000evil"}))[0] == 401
    # Expired; the second member is another name, not a later exp.
    raw = '{"iss":"iss","aud":"api","exp":%d,"exp\\u0000":%d}' % (now - 3600, now + 600)
    assert status(port, hs256(None, raw_payload=raw))[0] == 401
    wait_for(lambda: failures(s, "wrong audience") and failures(s, "expired"),
             what="failures logged")
    assert len(failures(s, "wrong audience")) == 2


def test_dates_at_the_edge_of_64_bits(procs, secret):
    """exp near 2^63 (far future: the token is good) and nbf near -2^63 (long
    past), with the default skew and with a skew of ages: no signed overflow
    (an ASan/UBSan build aborted on exp + clock_skew), and the answer a
    NumericDate that far out means."""
    o = procs.origin("b1")
    now = int(time.time())
    for skew in ("60s", "87600h"):   # 87600h: the longest duration a config takes
        port = free_port()
        procs.sluice(config(port, o, f"{{type: jwt, secret_file: {secret}, clock_skew: {skew}}}"))
        for claims in ({"exp": 9223372036854775799}, {"nbf": -922337203685477579},
                       {"exp": 9223372036854775799, "nbf": now - 10}):
            for _ in range(2):               # the second from the worker's cache
                assert status(port, hs256({"sub": "ann", **claims}))[0] == 200, (skew, claims)
        # Long expired and not valid for ages are still refused.
        assert status(port, hs256({"exp": -922337203685477579}))[0] == 401
        assert status(port, hs256({"nbf": 9223372036854775799}))[0] == 401


def curl_h2(port, *headers, path="/echo"):
    """One HTTP/2 (prior knowledge) request with curl: (status, headers text, body)."""
    args = [CURL, "-sS", "--http2-prior-knowledge", "-D", "-", "--max-time", "10"]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")      # text mode: \r\n read as \n
    assert head.startswith("HTTP/2 "), head
    return int(head.split()[1]), head.lower(), body


def test_a_second_authorization_field_is_refused(procs, secret, tmp_path):
    """sluice checks one Authorization field; a backend may read another
    (the last, or all of them joined). A request with two is refused (NGINX
    refuses a second one too), whatever the first holds, for Basic and for
    JWT, over HTTP/1.1 and HTTP/2 alike; one good field still passes."""
    o = procs.origin("b1")
    users = tmp_path / "users"
    hashed = subprocess.run([OPENSSL, "passwd", "-6", "-salt", "edges", "right"],
                            capture_output=True, text=True, check=True).stdout.strip()
    users.write_text(f"ann:{hashed}\n")
    ann = "Basic " + base64.b64encode(b"ann:right").decode()
    root = "Basic " + base64.b64encode(b"root:guess").decode()
    tok = "Bearer " + hs256({"sub": "ann", "exp": int(time.time()) + 600})
    for auth, good, forged in (
            (f"{{type: basic, users_file: {users}}}", ann, root),
            (f"{{type: jwt, secret_file: {secret}}}", tok, "Bearer forged.by.client")):
        port = free_port()
        s = procs.sluice(config(port, o, auth, extra="    http2: true"))
        def h1(*fields):
            lines = "".join(f"Authorization: {f}\r\n" for f in fields)
            return raw_request(port, f"GET /echo HTTP/1.1\r\nHost: t\r\n{lines}"
                                     "Connection: close\r\n\r\n")
        # One good field: passes, twice (the second from the cache).
        for _ in range(2):
            st, data = h1(good)
            assert st == 200 and data.count(b'"Authorization"') == 1, data[-600:]
            st, _, body = curl_h2(port, f"Authorization: {good}")
            assert st == 200 and body.lower().count('"authorization"') == 1, body
        for fields in ((good, forged), (forged, good), (good, good)):
            st, data = h1(*fields)
            assert st == 401 and b"www-authenticate" in data.lower(), (auth, fields, data)
            st, head, _ = curl_h2(port, *[f"Authorization: {f}" for f in fields])
            assert st == 401 and "www-authenticate" in head, (auth, fields, head)
        assert s.alive()


def peers_message(key, sender, seq, entries):
    """A peers message as sluice writes it (src/peers/peers.c)."""
    body = b"SLP1" + struct.pack(">QQQH", sender, seq, int(time.time() * 1000), len(entries))
    for share_id, h, count in entries:
        body += struct.pack(">QQH", share_id, h, count)
    return body + hmac.new(key, body, hashlib.sha256).digest()


def peer_messages(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'^sluice_peer_messages_total\{result="(\w+)"\} (\d+)$', text, re.M)}


def test_peer_updates_reach_the_new_process_during_a_reload(procs, tmp_path):
    """After a reload both processes are bound to peers.listen (SO_REUSEPORT)
    while the old one drains, and the kernel spreads datagrams between them
    by source address: the old process must let go of the peers' socket at
    the handover, or the updates of some peers are lost to the new one's
    shared limits for the whole drain."""
    o = procs.origin("b1")
    key = tmp_path / "peers.key"
    key.write_text("k" * 40 + "\n")
    port, admin, me, other = free_port(), free_port(), free_port(), free_port()
    s = procs.sluice("\n".join([
        "workers: 1", "drain_timeout: 30s", "log: {level: info, access: off}",
        f"admin: {{listen: 127.0.0.1:{admin}}}",
        f"peers: {{listen: '127.0.0.1:{me}', nodes: ['127.0.0.1:{other}'], secret_file: {key}}}",
        "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
        "    pool: app", "    rate_limit: {rate: 10/s, key: header:x-user, shared: true}",
        "pools:", "  - name: app", f"    backends: [{{address: {o.address}}}]"]) + "\n",
        wait_ports=[port])
    # A request in flight keeps the old process draining after the reload.
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow.sendall(b"GET /delay/6000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    try:
        time.sleep(0.3)
        new_pid = s.reload()
        assert s.pid != new_pid and s.alive()        # the old one still drains
        wait_for(lambda: peer_messages(admin) == {"sent": 0, "received": 0, "rejected": 0,
                                                  "send_failed": 0},
                 timeout=10, what="the new process's admin")
        # Each from its own source port: the kernel picks a socket per source.
        n = 24
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
        for i, u in enumerate(socks):
            u.sendto(peers_message(b"k" * 40, 1000 + i, 1, [(1, 2, 3)]), ("127.0.0.1", me))
        wait_for(lambda: peer_messages(admin)["received"] >= n, timeout=10,
                 what=f"{n} messages received by the new process")
        for u in socks:
            u.close()
        # The old process finishes its request, then exits.
        assert b"200 OK" in recv_all(slow)
    finally:
        slow.close()
