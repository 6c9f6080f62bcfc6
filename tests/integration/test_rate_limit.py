"""Rate limits through the real binary: per client address, per header, per
route, shared exactly by every worker, tcp connections, Retry-After, the
access log and the counters."""
import http.client
import re
import socket
import threading
import time

from harness import free_port, wait_for


def http_config(port, admin_port, origin, listener_limit="", routes="", workers=2):
    lines = [f"workers: {workers}", "log: {level: info, access: stdout}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app"]
    if listener_limit:
        lines.append(f"    rate_limit: {listener_limit}")
    if routes:
        lines.append("    routes:")
        lines += ["      " + r for r in routes.strip("\n").split("\n")]
    lines += ["pools:", "  - name: app", "    backends:",
              f"      - {{name: b1, address: {origin.address}}}"]
    return "\n".join(lines) + "\n"


def get(port, path="/", headers=None, source="127.0.0.1"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("Retry-After"), body


def statuses(port, n, **kw):
    return [get(port, **kw)[0] for _ in range(n)]


def metric(admin_port, name, labels):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    m = re.search(r"^%s\{%s\} (\d+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    assert m, text
    return int(m.group(1))


def test_per_client_address_with_burst_and_retry_after(procs):
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    s = procs.sluice(http_config(port, aport, o, "{rate: 1/m, burst: 3}"))
    # 1 + burst pass, then every request is refused until a minute passes.
    assert statuses(port, 8) == [200] * 4 + [429] * 4
    status, retry_after, body = get(port)
    assert (status, body) == (429, b"too many requests\n")
    assert 55 <= int(retry_after) <= 60, retry_after
    # Another client address has its own bucket.
    assert statuses(port, 5, source="127.0.0.2") == [200] * 4 + [429]
    assert metric(aport, "sluice_rate_limited_total", 'listener="web",limit="listener"') == 6
    wait_for(lambda: len(re.findall(r"end=rate_limited", s.stdout())) == 6,
             what="6 access log lines with end=rate_limited")
    assert re.search(r'" 429 .*end=rate_limited', s.stdout())


def test_refills_at_the_rate(procs):
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    procs.sluice(http_config(port, aport, o, "{rate: 2/s}"))
    assert statuses(port, 2) == [200, 429]
    time.sleep(0.6)                     # one token every 500 ms
    assert statuses(port, 2) == [200, 429]


def test_header_key_and_route_limit(procs):
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    routes = """
- match: {path_prefix: /login}
  pool: app
  rate_limit: {rate: 1/h, burst: 1, key: 'header:x-user', status: 503}
- {match: {path_prefix: /}, pool: app}
"""
    procs.sluice(http_config(port, aport, o, routes=routes))
    # Per user: two each, then 503 with an hour's Retry-After.
    assert statuses(port, 3, path="/login", headers={"X-User": "ann"}) == [200, 200, 503]
    assert statuses(port, 3, path="/login", headers={"X-User": "bob"}) == [200, 200, 503]
    status, retry_after, _ = get(port, path="/login", headers={"X-User": "ann"})
    assert status == 503 and 3590 <= int(retry_after) <= 3600
    # Without the header the request has no key and is not counted.
    assert statuses(port, 5, path="/login") == [200] * 5
    # Other routes are not limited at all.
    assert statuses(port, 10, path="/other", headers={"X-User": "ann"}) == [200] * 10
    assert metric(aport, "sluice_rate_limited_total", 'listener="web",limit="route1"') == 3


def test_shared_exactly_by_all_workers(procs):
    """40 clients at once over 4 workers: exactly 1 + burst pass."""
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    procs.sluice(http_config(port, aport, o, "{rate: 1/h, burst: 24, key: global}", workers=4))
    results = []
    lock = threading.Lock()

    def client():
        got = statuses(port, 5)
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200
    assert results.count(200) == 25
    assert results.count(429) == 175


def test_tcp_connections(procs):
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    cfg = "\n".join(["workers: 2", "log: {level: info, access: stdout}",
                     f"admin: {{listen: 127.0.0.1:{aport}}}", "listeners:",
                     f"  - {{name: l4, bind: 127.0.0.1:{port}, mode: tcp, pool: app,",
                     "     rate_limit: {rate: 1/m, burst: 1}}",
                     "pools:", "  - name: app", "    backends:",
                     f"      - {{name: b1, address: {o.address}}}"]) + "\n"
    s = procs.sluice(cfg)

    def exchange():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = c.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
            return data

    assert exchange().startswith(b"HTTP/1.1 200")
    assert exchange().startswith(b"HTTP/1.1 200")
    # Over the limit: closed before any backend is tried, nothing sent.
    assert exchange() == b""
    assert exchange() == b""
    assert metric(aport, "sluice_rate_limited_total", 'listener="l4",limit="listener"') == 2
    wait_for(lambda: s.stdout().count("end=rate_limited") == 2, what="tcp access log lines")
