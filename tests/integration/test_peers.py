"""Shared rate limits between two sluice instances (a top-level `peers`
block and `rate_limit.shared: true`): a client that spreads its requests
over both gets the configured rate in all, not twice it; messages without
the key, or replayed, count nothing; a peer that is down leaves the other
limiting on its own."""
import hmac
import hashlib
import re
import socket
import struct
import subprocess
import time

from harness import SLUICE, free_port, wait_for


def secret(tmp_path, text="x" * 40):
    path = tmp_path / "peers.key"
    path.write_text(text + "\n")
    return str(path)


def config(port, admin, origin, me, other, key, shared=True, rate="10/s"):
    return "\n".join([
        "workers: 2", "log: {level: info, access: off}", f"admin: {{listen: 127.0.0.1:{admin}}}",
        f"peers: {{listen: '127.0.0.1:{me}', nodes: ['127.0.0.1:{other}'], secret_file: {key}}}",
        "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
        "    pool: app",
        f"    rate_limit: {{rate: {rate}, burst: 0, key: header:x-user, shared: {str(shared).lower()}}}",
        "pools:", "  - name: app", f"    backends: [{{address: {origin.address}}}]",
    ]) + "\n"


def get(port, user):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: t\r\nx-user: {user}\r\nConnection: close\r\n\r\n".encode())
        return int(s.recv(64).split()[1])


def hammer(ports, user, seconds):
    """Requests as fast as one client goes, alternating between the
    instances, for `seconds`; how many got 200."""
    ok, i, end = 0, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        ok += get(ports[i % len(ports)], user) == 200
        i += 1
    return ok, i


def metric(admin, name):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(rf'^{name}\{{result="(\w+)"\}} (\d+)$', text, re.M)}


def pair(procs, tmp_path, shared=True):
    o = procs.origin("b1")
    key = secret(tmp_path)
    p1, p2, a1, a2 = free_port(), free_port(), free_port(), free_port()
    u1, u2 = free_port(), free_port()
    s1 = procs.sluice(config(p1, a1, o, u1, u2, key, shared), wait_ports=[p1])
    s2 = procs.sluice(config(p2, a2, o, u2, u1, key, shared), wait_ports=[p2])
    return (p1, p2), (a1, a2), (u1, u2), (s1, s2)


def test_two_instances_share_one_rate(procs, tmp_path):
    ports, admins, _, _ = pair(procs, tmp_path)
    ok, n = hammer(ports, "ann", 3.0)
    # 10/s for 3 s is 30 (+1 at the start); each instance alone would allow
    # about 60 between them. The 50 ms between updates lets a little more
    # through.
    assert n > 100, n
    assert 24 <= ok <= 42, (ok, n)
    # Another key has its own budget.
    assert get(ports[0], "bob") == 200
    for a in admins:
        m = metric(a, "sluice_peer_messages_total")
        assert m["sent"] > 0 and m["received"] > 0 and m["rejected"] == 0, m


def test_without_sharing_each_instance_allows_the_rate(procs, tmp_path):
    ports, _, _, _ = pair(procs, tmp_path, shared=False)
    ok, n = hammer(ports, "ann", 3.0)
    assert ok >= 54, (ok, n)


def message(key, sender, seq, entries, sent_ms=None):
    """A peers message as sluice writes it (src/peers/peers.c)."""
    sent_ms = int(time.time() * 1000) if sent_ms is None else sent_ms
    body = b"SLP1" + struct.pack(">QQQH", sender, seq, sent_ms, len(entries))
    for share_id, h, count in entries:
        body += struct.pack(">QQH", share_id, h, count)
    return body + hmac.new(key, body, hashlib.sha256).digest()


def test_bad_messages_count_nothing(procs, tmp_path):
    ports, admins, udp, _ = pair(procs, tmp_path)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    good_key = b"x" * 40
    # Wrong key, stale, garbage, truncated: all rejected.
    bad = [message(b"y" * 40, 7, 1, [(1, 2, 3)]),
           message(good_key, 7, 2, [(1, 2, 3)], sent_ms=int(time.time() * 1000) - 60000),
           b"SLP1" + b"\0" * 10, message(good_key, 7, 3, [(1, 2, 3)])[:-5]]
    for m in bad:
        s.sendto(m, ("127.0.0.1", udp[0]))
    wait_for(lambda: metric(admins[0], "sluice_peer_messages_total")["rejected"] >= len(bad),
             what="the bad messages to be rejected")
    # A good one, then the same again (a replay).
    before = metric(admins[0], "sluice_peer_messages_total")
    m = message(good_key, 99, 5, [(1, 2, 3)])
    s.sendto(m, ("127.0.0.1", udp[0]))
    s.sendto(m, ("127.0.0.1", udp[0]))
    wait_for(lambda: metric(admins[0], "sluice_peer_messages_total")["rejected"]
             >= before["rejected"] + 1, what="the replay to be rejected")
    after = metric(admins[0], "sluice_peer_messages_total")
    assert after["received"] >= before["received"] + 1
    s.close()


def test_a_peer_down_leaves_the_other_limiting_alone(procs, tmp_path):
    ports, admins, _, (s1, s2) = pair(procs, tmp_path)
    s2.stop()
    ok, n = hammer(ports[:1], "ann", 2.0)
    assert 18 <= ok <= 24, (ok, n)


def test_config_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    key = secret(tmp_path)
    short = tmp_path / "short.key"
    short.write_text("tooshort\n")
    cases = [
        ("", "rate_limit.shared: needs a top-level peers block"),
        (f"peers: {{listen: '127.0.0.1:7000', nodes: [], secret_file: {key}}}\n",
         "peers: nodes: give 1 to 32 addresses"),
        (f"peers: {{listen: 'localhost:7000', nodes: ['127.0.0.1:7001'], secret_file: {key}}}\n",
         "peers: listen: 'localhost:7000' is not IP:PORT"),
        (f"peers: {{listen: '127.0.0.1:7000', nodes: ['127.0.0.1:7001'], secret_file: {short}}}\n",
         "peers: secret_file: '" + str(short) + "' must hold 32 to 1000 bytes"),
        ("peers: {listen: '127.0.0.1:7000', nodes: ['127.0.0.1:7001']}\n",
         "peers: missing required key 'secret_file'"),
    ]
    for peers, want in cases:
        path.write_text(peers + "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n"
                        "    mode: http\n    pool: app\n"
                        "    rate_limit: {rate: 10/s, shared: true}\n"
                        "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n")
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and want in r.stderr, (want, r.stderr)
