"""Edges of removing dead backends: health checks that are still running
when sluice stops, slow start after an operator's drain, and the state the
checks and the balancers agree on."""
import http.client
import json
import socket
import time

from harness import free_port, http_get, wait_for
from test_health import names


def pool_config(port, backends, pool_extra, admin_port=None, balance="round_robin", top=""):
    lines = ["workers: 1", "log: {level: debug, access: off}", top]
    if admin_port:
        lines.append(f"admin: {{listen: 127.0.0.1:{admin_port}}}")
    lines += ["listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
              "    pool: app", "pools:", "  - name: app", f"    balance: {balance}",
              pool_extra.rstrip("\n"), "    backends:"]
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(l for l in lines if l) + "\n"


def admin(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def post(port, path):
    st, _ = admin(port, "POST", path)
    assert st == 200


def test_tls_check_running_at_stop_is_freed(procs):
    # A TLS backend that accepts the connection and never answers the
    # ClientHello: with timeout = interval, a check is nearly always in the
    # middle of its handshake. Stopping sluice then must free the check's
    # TLS state (ASan's leak check fails the test otherwise).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = free_port()
    s = procs.sluice(pool_config(
        port, [("b1", f"127.0.0.1:{silent.getsockname()[1]}")],
        "    tls: {verify: false}\n"
        "    health_check: {type: http, path: /health, interval: 1s, timeout: 1s}\n"))
    wait_for(lambda: "result=fail" in s.stderr(), timeout=10, what="first check")
    time.sleep(0.3)
    assert s.stop() == 0
    assert "Sanitizer" not in s.stderr(), s.stderr()[-3000:]
    silent.close()


def test_enable_after_drain_goes_through_slow_start(procs):
    # docs/health.md: "enable puts it back (through slow start when set)".
    a, b = procs.origin("b1"), procs.origin("b2")
    port, aport = free_port(), free_port()
    procs.sluice(pool_config(port, [("b1", a.address), ("b2", b.address)],
                             "    slow_start: 30s\n", admin_port=aport), wait_ports=[port])
    assert sorted(set(names(port, 10))) == ["b1", "b2"]
    post(aport, "/api/v1/pools/app/backends/b2/drain")
    assert set(names(port, 10)) == {"b1"}
    post(aport, "/api/v1/pools/app/backends/b2/enable")
    seen = names(port, 100)
    # Ramping from 10% of its weight: about one request in eleven, not half.
    assert 0 < seen.count("b2") <= 30, seen.count("b2")


def status(admin_port):
    st, data = admin(admin_port, "GET", "/api/v1/status")
    assert st == 200
    return {b["name"]: b for b in json.loads(data)["pools"][0]["backends"]}


def test_discovered_backend_ramps_after_first_pass(procs):
    # docs/discovery.md: a new address "starts DOWN and is UP after its
    # first check passes ... With slow_start it ramps up after its first
    # pass like any recovered backend."
    from dns_server import DnsServer
    dns = DnsServer()
    try:
        oport = free_port()
        procs.origin("o2", host="127.0.0.2", port=oport)
        o3 = procs.origin("o3", host="127.0.0.3", port=oport)
        dns.set_a("app.test", ["127.0.0.2"])
        port, aport = free_port(), free_port()
        procs.sluice(pool_config(
            port, [], f"    discovery: {{dns: app.test, port: {oport}, resolvers: ['{dns.address}'],"
            " interval: 200ms}\n"
            "    slow_start: 30s\n"
            "    health_check: {type: http, path: /health, interval: 100ms, timeout: 100ms}\n",
            admin_port=aport).replace("    backends:\n", ""), wait_ports=[port])
        assert set(names(port, 4)) == {"o2"}
        dns.set_a("app.test", ["127.0.0.2", "127.0.0.3"])
        wait_for(lambda: status(aport).get(o3.address, {}).get("state") in ("UP", "SLOW_START"),
                 timeout=5,
                 what="o3 to join and pass its check")
        seen = names(port, 100)
        assert 0 < seen.count("o3") <= 30, seen.count("o3")
    finally:
        dns.stop()


def test_expect_body_found_across_chunks(procs):
    # A chunked /health body whose text arrives in two chunks (a server that
    # flushes as it writes): expect_body is in the body the backend sent,
    # so the check passes; the chunk-size line between the halves is
    # framing, not body.
    from harness import AcceptLoop

    def answer(c):
        try:
            c.settimeout(5)
            c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"a\r\n{\"status\":\r\n6\r\n\"UP\"}\n\r\n0\r\n\r\n")
            c.close()
        except OSError:
            pass
    backend = AcceptLoop(answer)
    try:
        port = free_port()
        s = procs.sluice(pool_config(
            port, [("b1", backend.address)],
            "    health_check: {type: http, path: /health, interval: 200ms, timeout: 200ms,"
            " expect_body: '\"status\":\"UP\"', healthy_threshold: 1, unhealthy_threshold: 1}\n"))
        assert "event=health_initial pool=app backend=b1 result=pass" in s.stderr(), \
            s.log_lines("health_initial")
        time.sleep(0.5)
        assert "to=DOWN" not in s.stderr()
    finally:
        backend.stop()


def test_back_up_backend_not_ejected_for_failures_while_down(procs):
    # Both backends dead: the checks take them DOWN and the last resort
    # still tries them, so each request counts a failed connect on both.
    # When they come back and their checks pass, those old failures must
    # not eject one of them: it is healthy now and has failed nothing since.
    p1, p2 = free_port(), free_port()
    port = free_port()
    s = procs.sluice(pool_config(
        port, [("b1", f"127.0.0.1:{p1}"), ("b2", f"127.0.0.1:{p2}")],
        "    outlier_detection: {consecutive_failures: 3, ejection_time: 30s,"
        " max_ejection_percent: 50}\n"
        "    health_check: {type: tcp, interval: 100ms, timeout: 100ms,"
        " healthy_threshold: 1, unhealthy_threshold: 1}\n"))
    for _ in range(5):
        assert http_get(port)[0] == 503
    procs.origin("b1", port=p1)
    procs.origin("b2", port=p2)
    wait_for(lambda: s.stderr().count("to=UP") == 2, timeout=5, what="both UP")
    time.sleep(0.5)             # a few outlier ticks
    assert "event=outlier_ejected" not in s.stderr()
    assert sorted(set(names(port, 10))) == ["b1", "b2"]


def test_ramping_backend_shows_slow_start(procs):
    # The contract's states: SLOW_START is "UP, weight ramping". The status
    # API and sluice_backend_state say so while the ramp runs, and UP after.
    a, b = procs.origin("b1"), procs.origin("b2")
    port, aport = free_port(), free_port()
    procs.sluice(pool_config(port, [("b1", a.address), ("b2", b.address)],
                             "    slow_start: 2s\n", admin_port=aport), wait_ports=[port])
    assert status(aport)["b2"]["state"] == "UP"
    post(aport, "/api/v1/pools/app/backends/b2/disable")
    post(aport, "/api/v1/pools/app/backends/b2/enable")
    assert status(aport)["b2"]["state"] == "SLOW_START"
    _, m = admin(aport, "GET", "/metrics")
    assert 'sluice_backend_state{pool="app",backend="b2",state="SLOW_START"} 1' in m.decode()
    assert 'sluice_backend_up{pool="app",backend="b2"} 1' in m.decode()
    _, st = admin(aport, "GET", "/api/v1/status")
    assert json.loads(st)["pools"][0]["states"]["SLOW_START"] == 1
    wait_for(lambda: status(aport)["b2"]["state"] == "UP", timeout=10, what="the ramp to end")
    assert status(aport)["b1"]["state"] == "UP"
