"""Consistent hashing through the real binary: the same key always reaches
the same origin, and a drained backend's keys move away and come back."""
import http.client

from harness import free_port


def config(port, admin_port, balance, hash_key, backends):
    lines = ["workers: 2", "log: {level: info, access: off}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app", "pools:",
             "  - name: app", f"    balance: {balance}", f"    hash_key: '{hash_key}'",
             "    backends:"]
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def who(port, headers=None, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path, headers=headers or {})
    body = c.getresponse().read().strip().decode()
    c.close()
    return body


def admin(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def test_same_key_same_origin_and_drain_moves_keys(procs):
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3, 4)]
    for balance, key, make in [
        ("maglev", "header:x-user", lambda k: ({"X-User": k}, "/")),
        ("ring_hash", "cookie:sid", lambda k: ({"Cookie": f"sid={k}"}, "/")),
        ("maglev", "query:u", lambda k: ({}, f"/?u={k}")),
    ]:
        port, aport = free_port(), free_port()
        procs.sluice(config(port, aport, balance, key, [(o.origin_name, o.address) for o in os_]))
        keys = [f"user{i}" for i in range(60)]
        first = {}
        for k in keys:
            h, path = make(k)
            first[k] = who(port, h, path)
        # Stable: every key, asked again (on new connections, either worker).
        for k in keys:
            h, path = make(k)
            assert who(port, h, path) == first[k], (balance, k)
        assert len(set(first.values())) >= 3      # keys spread over the backends
        # Drain b1: its keys move, the others stay put.
        assert admin(aport, "POST", "/api/v1/pools/app/backends/b1/drain") == 200
        moved = {}
        for k in keys:
            h, path = make(k)
            moved[k] = who(port, h, path)
        for k in keys:
            if first[k] == "b1":
                assert moved[k] != "b1"
            elif balance == "ring_hash":
                assert moved[k] == first[k], (balance, k)
        assert sum(moved[k] != first[k] for k in keys if first[k] != "b1") <= 3
        # Enable: they come back.
        assert admin(aport, "POST", "/api/v1/pools/app/backends/b1/enable") == 200
        for k in keys:
            h, path = make(k)
            assert who(port, h, path) == first[k], (balance, k)


def test_two_instances_agree(procs):
    """Active-active: two sluice processes map every key the same way."""
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    ports = []
    for _ in range(2):
        port, aport = free_port(), free_port()
        procs.sluice(config(port, aport, "maglev", "header:x-user",
                            [(o.origin_name, o.address) for o in os_]))
        ports.append(port)
    for i in range(50):
        h = {"X-User": f"u{i}"}
        assert who(ports[0], h) == who(ports[1], h)
