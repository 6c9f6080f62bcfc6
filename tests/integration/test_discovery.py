"""DNS service discovery through the real binary: pools whose backends are
what a name resolves to, served by a DNS server the test controls
(dns_server.py). sluice follows the answers, drains what leaves them, keeps
its backends when the resolver fails, and reads SRV priorities, weights and
ports."""
import http.client
import json
import re
import socket
import threading
import time

import pytest

from dns_server import DnsServer
from harness import free_port, http_get, wait_for


@pytest.fixture
def dns():
    d = DnsServer()
    yield d
    d.stop()


def config(port, admin_port, discovery, pool_extra="", workers=1, balance="round_robin",
           drain="10s"):
    return (f"workers: {workers}\nlog: {{level: info, access: off}}\n"
            f"admin: {{listen: 127.0.0.1:{admin_port}}}\n"
            "listeners:\n"
            f"  - {{name: web, bind: 127.0.0.1:{port}, mode: http, pool: app}}\n"
            "pools:\n"
            f"  - name: app\n    balance: {balance}\n    drain_timeout: {drain}\n"
            "    timeouts: {connect: 1s}\n"
            f"    discovery: {discovery}\n{pool_extra}")


def start(procs, dns, oport, discovery_extra="", pool_extra="", interval="200ms", **kw):
    """sluice with pool app discovering app.test (A records) from dns;
    returns (sluice, port, admin port)."""
    port, aport = free_port(), free_port()
    s = procs.sluice(config(port, aport, f"{{dns: app.test, port: {oport}, "
                                         f"resolvers: ['{dns.address}'], interval: {interval}"
                                         f"{discovery_extra}}}", pool_extra, **kw),
                     wait_ports=[port])
    return s, port, aport


def status(admin_port):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    c.request("GET", "/api/v1/status")
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    return {b["name"]: b for b in body["pools"][0]["backends"]}


def metrics(admin_port):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return text


def served_by(port, n):
    """Who answered n requests (each on its own connection)."""
    seen = {}
    for _ in range(n):
        st, _, body = http_get(port)
        key = body.decode().strip() if st == 200 else st
        seen[key] = seen.get(key, 0) + 1
    return seen


def origins_on(procs, hosts):
    """One origin per loopback address, all on the same port (A records
    carry no port: the pool's discovery.port applies to every address)."""
    port = free_port()
    return port, [procs.origin(f"o{h.split('.')[-1]}", host=h, port=port) for h in hosts]


def test_a_records_are_the_backends_and_changes_follow(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3"])
    s, port, aport = start(procs, dns, oport)
    # The first answer is in before the first request.
    assert served_by(port, 10) == {"o2": 5, "o3": 5}
    st = status(aport)
    assert sorted(st) == [f"127.0.0.2:{oport}", f"127.0.0.3:{oport}"]
    assert {b["state"] for b in st.values()} == {"UP"}
    assert st[f"127.0.0.2:{oport}"]["address"] == f"127.0.0.2:{oport}"

    dns.set_a("app.test", ["127.0.0.3", "127.0.0.4"])
    wait_for(lambda: sorted(status(aport)) == [f"127.0.0.3:{oport}", f"127.0.0.4:{oport}"],
             timeout=5, what="127.0.0.2 to leave and 127.0.0.4 to join")
    assert served_by(port, 10) == {"o3": 5, "o4": 5}
    lines = s.log_lines("discovery_update")
    assert any("added=1 removed=1" in l for l in lines), lines
    assert s.log_lines("backend_removed")
    m = metrics(aport)
    assert f'sluice_backend_up{{pool="app",backend="127.0.0.4:{oport}"}} 1' in m
    assert f'127.0.0.2:{oport}' not in m        # its series ended with it
    ok = re.search(r'sluice_discovery_resolutions_total\{pool="app",result="ok"\} (\d+)', m)
    assert ok and int(ok.group(1)) >= 2


def test_removed_backend_finishes_what_it_has(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3"])
    dns.set_a("app.test", ["127.0.0.2"])
    _, port, aport = start(procs, dns, oport, workers=2)
    slow = {}

    def slow_request():
        slow["r"] = http_get(port, "/delay/1500", timeout=10)
    t = threading.Thread(target=slow_request)
    t.start()
    wait_for(lambda: status(aport)[f"127.0.0.2:{oport}"]["active_requests"] == 1,
             what="the slow request to reach o2")
    dns.set_a("app.test", ["127.0.0.3"])
    wait_for(lambda: status(aport).get(f"127.0.0.2:{oport}", {}).get("state") == "DRAINING",
             timeout=5, what="o2 to drain")
    assert served_by(port, 4) == {"o3": 4}          # no new work to the drained one
    # An operator cannot bring back what DNS dropped: it drains again.
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
    c.request("POST", f"/api/v1/pools/app/backends/127.0.0.2:{oport}/enable")
    assert c.getresponse().status == 200
    c.close()
    wait_for(lambda: status(aport)[f"127.0.0.2:{oport}"]["state"] == "DRAINING", timeout=5,
             what="o2 to drain again")
    assert served_by(port, 4) == {"o3": 4}
    t.join(10)
    assert slow["r"][0] == 200 and slow["r"][2].strip() == b"o2"
    # Nothing uses it any more: its slot is vacated.
    wait_for(lambda: f"127.0.0.2:{oport}" not in status(aport), timeout=5,
             what="o2's slot to be vacated")


def test_resolver_failure_keeps_the_last_answer(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3"])
    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3"])
    s, port, aport = start(procs, dns, oport, ", timeout: 100ms", workers=2)
    for mode in ("servfail", "silent"):
        n = len(s.log_lines("discovery_failed"))
        dns.set_mode(mode)
        wait_for(lambda: len(s.log_lines("discovery_failed")) > n, timeout=5,
                 what=f"a failed resolution ({mode})")
        assert set(served_by(port, 6)) == {"o2", "o3"}
        dns.set_mode("answer")
        wait_for(lambda: s.log_lines("discovery_recovered")[n:], timeout=5,
                 what="the resolver to come back")
    m = metrics(aport)
    failed = re.search(r'sluice_discovery_resolutions_total\{pool="app",result="failed"\} (\d+)', m)
    assert failed and int(failed.group(1)) >= 2


def test_an_empty_answer_empties_the_pool(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2"])
    dns.set_a("app.test", ["127.0.0.2"])
    _, port, aport = start(procs, dns, oport)
    assert http_get(port)[0] == 200
    dns.remove("app.test")                      # NXDOMAIN: the name is gone
    wait_for(lambda: status(aport) == {}, timeout=5, what="the pool to empty")
    assert http_get(port)[0] == 503
    dns.set_a("app.test", ["127.0.0.2"])
    wait_for(lambda: http_get(port)[0] == 200, timeout=5, what="the backend to come back")


def test_srv_priority_weight_and_port(procs, dns):
    a, b, c = (procs.origin(n) for n in ("a", "b", "c"))
    dns.set_a("a.test", ["127.0.0.1"])
    dns.set_a("b.test", ["127.0.0.1"])
    dns.set_a("c.test", ["127.0.0.1"])
    dns.set_srv("_http._tcp.app.test", [(10, 30, a.port, "a.test"), (10, 10, b.port, "b.test"),
                                        (20, 10, c.port, "c.test")])
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, f"{{dns: _http._tcp.app.test, type: srv, "
                                     f"resolvers: ['{dns.address}'], interval: 200ms}}",
                        workers=1),
                 wait_ports=[port])
    # Priority 10 serves; c (priority 20) is its fallback. Weights 30:10.
    assert served_by(port, 40) == {"a": 30, "b": 10}
    st = status(aport)
    assert sorted(st) == sorted([a.address, b.address])
    assert st[a.address]["weight"] == 30 and st[b.address]["weight"] == 10
    dns.set_srv("_http._tcp.app.test", [(20, 10, c.port, "c.test")])
    wait_for(lambda: sorted(status(aport)) == [c.address], timeout=5, what="c to take over")
    assert served_by(port, 4) == {"c": 4}


def test_discovered_backends_are_health_checked(procs, dns):
    oport, origins = origins_on(procs, ["127.0.0.2", "127.0.0.3"])
    # o3 fails its checks from the start.
    with socket.create_connection(("127.0.0.3", oport), timeout=2) as sk:
        sk.sendall(b"POST /health/fail HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                   b"Connection: close\r\n\r\n")
        sk.recv(1024)
    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3"])
    check = ("    health_check: {type: http, path: /health, interval: 200ms, timeout: 200ms, "
             "healthy_threshold: 1, unhealthy_threshold: 1}\n")
    _, port, aport = start(procs, dns, oport, pool_extra=check)
    st = status(aport)
    assert st[f"127.0.0.2:{oport}"]["state"] == "UP"
    assert st[f"127.0.0.3:{oport}"]["state"] == "DOWN"
    assert served_by(port, 6) == {"o2": 6}
    # A backend that joins later starts DOWN and is UP after its first pass.
    o4 = procs.origin("o4", host="127.0.0.4", port=oport)
    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    wait_for(lambda: status(aport).get(o4.address, {}).get("state") == "UP", timeout=5,
             what="o4 to join and pass its check")
    assert set(served_by(port, 8)) == {"o2", "o4"}


def test_two_instances_hash_keys_alike(procs, dns):
    """Backends are named by address, so two sluice instances that see the
    same answer send every key to the same backend without talking."""
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
    dns.set_a("app.test", ["127.0.0.5", "127.0.0.3", "127.0.0.2", "127.0.0.4"])
    ports = [start(procs, dns, oport, pool_extra="    hash_key: header:x-user\n",
                   balance="maglev")[1] for _ in range(2)]

    def owner(port, user):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sk:
            sk.sendall(f"GET / HTTP/1.1\r\nHost: t\r\nx-user: {user}\r\n"
                       "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := sk.recv(4096):
                data += chunk
        return data.partition(b"\r\n\r\n")[2].strip()

    owners = [[owner(p, f"user{i}") for i in range(40)] for p in ports]
    assert owners[0] == owners[1]
    assert len(set(owners[0])) == 4


def test_reload_keeps_discovered_backends(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3"])
    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3"])
    s, port, aport = start(procs, dns, oport, workers=2)
    served_by(port, 4)
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
    c.request("POST", f"/api/v1/pools/app/backends/127.0.0.3:{oport}/drain")
    assert c.getresponse().status == 200
    c.close()
    s.reload()
    st = status(aport)
    # The new process resolved the name itself, and kept the operator's drain
    # and the counters of backends by name.
    assert st[f"127.0.0.3:{oport}"]["state"] == "DRAINING"
    assert st[f"127.0.0.2:{oport}"]["requests_total"] >= 2
    assert served_by(port, 4) == {"o2": 4}


def test_reload_while_the_resolver_is_down_keeps_the_backends(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3"])
    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3"])
    s, port, aport = start(procs, dns, oport, ", timeout: 100ms")
    assert served_by(port, 4) == {"o2": 2, "o3": 2}
    dns.set_mode("silent")
    s.reload()
    assert len(s.log_lines("discovery_seeded")) == 2, s.stderr()[-2000:]
    assert sorted(status(aport)) == [f"127.0.0.2:{oport}", f"127.0.0.3:{oport}"]
    assert served_by(port, 4) == {"o2": 2, "o3": 2}
    # When DNS answers again, its answer rules.
    dns.set_a("app.test", ["127.0.0.3"])
    dns.set_mode("answer")
    wait_for(lambda: sorted(status(aport)) == [f"127.0.0.3:{oport}"], timeout=5,
             what="the new answer to apply")


def test_config_errors_point_at_the_key(tmp_path):
    import subprocess
    from harness import SLUICE
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - {name: w, bind: 127.0.0.1:1, mode: http, pool: app}\n"
                   "pools:\n  - name: app\n"
                   "    discovery: {dns: _x._tcp.app.test, type: srv, port: 80}\n")
    r = subprocess.run([SLUICE, "check", "-c", str(bad)], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert re.search(rb"bad\.yaml:5:\d+: error: pool 'app': discovery\.port: SRV records give",
                     r.stdout + r.stderr), r.stdout + r.stderr


def test_tcp_pool_follows_dns_and_open_connections_finish(procs, dns):
    oport = free_port()
    for h in ("127.0.0.2", "127.0.0.3"):
        procs.origin(f"e{h[-1]}", mode="tcp-echo", host=h, port=oport)
    dns.set_a("app.test", ["127.0.0.2"])
    port, aport = free_port(), free_port()
    procs.sluice("workers: 2\nlog: {level: info, access: off}\n"
                 f"admin: {{listen: 127.0.0.1:{aport}}}\n"
                 f"listeners: [{{name: l4, bind: 127.0.0.1:{port}, mode: tcp, pool: app}}]\n"
                 "pools:\n  - name: app\n    drain_timeout: 10s\n"
                 f"    discovery: {{dns: app.test, port: {oport}, "
                 f"resolvers: ['{dns.address}'], interval: 200ms}}\n", wait_ports=[port])

    def echo(sk, data):
        sk.sendall(data)
        got = b""
        while len(got) < len(data):
            got += sk.recv(4096)
        return got

    old = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert echo(old, b"first") == b"first"
    dns.set_a("app.test", ["127.0.0.3"])
    wait_for(lambda: status(aport).get(f"127.0.0.2:{oport}", {}).get("state") == "DRAINING",
             timeout=5, what="127.0.0.2 to drain")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sk:
            assert echo(sk, b"new") == b"new"
    wait_for(lambda: status(aport)[f"127.0.0.3:{oport}"]["requests_total"] == 3, timeout=5,
             what="the new connections to reach 127.0.0.3")
    # The connection made before the change still works, and holds the
    # drained backend until it closes.
    assert echo(old, b"still here") == b"still here"
    assert f"127.0.0.2:{oport}" in status(aport)
    old.close()
    wait_for(lambda: f"127.0.0.2:{oport}" not in status(aport), timeout=5,
             what="the drained backend to leave once its connection closed")


def test_aaaa_records(procs, dns):
    o = procs.origin("v6", host="[::1]")
    dns.set_aaaa("app6.test", ["::1"])
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, f"{{dns: app6.test, type: aaaa, port: {o.port}, "
                                     f"resolvers: ['{dns.address}'], interval: 200ms}}"),
                 wait_ports=[port])
    assert served_by(port, 2) == {"v6": 2}
    assert sorted(status(aport)) == [f"[::1]:{o.port}"]


def test_flapping_answers_under_load(procs, dns):
    """Answers that change every 400 ms, more addresses over time than
    slots (max_backends: 3), and requests all the while from four clients
    over two workers: slots are drained, vacated and filled again under
    load. Nothing may fail but a 503 while every slot is still draining,
    and sluice (under ASan in make test) must stay clean."""
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
    answers = [["127.0.0.2", "127.0.0.3"], ["127.0.0.3", "127.0.0.4"], ["127.0.0.4", "127.0.0.5"],
               ["127.0.0.5", "127.0.0.2"], ["127.0.0.2", "127.0.0.4"]]
    dns.set_a("app.test", answers[0])
    s, port, aport = start(procs, dns, oport, ", max_backends: 3", interval="100ms", drain="1s",
                           workers=2)
    stop = threading.Event()
    results = []

    def client():
        seen = {}
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while not stop.is_set():
            try:
                c.request("GET", "/delay/2")
                r = c.getresponse()
                r.read()
                seen[r.status] = seen.get(r.status, 0) + 1
            except (OSError, http.client.HTTPException) as e:
                seen[type(e).__name__] = seen.get(type(e).__name__, 0) + 1
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.close()
        results.append(seen)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        end = time.monotonic() + 5
        i = 0
        while time.monotonic() < end:
            i += 1
            dns.set_a("app.test", answers[i % len(answers)])
            time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    total = {}
    for seen in results:
        for k, v in seen.items():
            total[k] = total.get(k, 0) + v
    assert set(total) <= {200, 503}, total
    assert total.get(200, 0) >= 0.95 * sum(total.values()), total
    # Slots were emptied and filled again with other addresses.
    assert len(s.log_lines("backend_removed")) >= 3, s.stderr()[-3000:]
    assert len(s.log_lines("backend_added")) >= 6, s.stderr()[-3000:]
    # It settles on the last answer.
    last = answers[i % len(answers)]
    wait_for(lambda: sorted(status(aport)) == sorted(f"{h}:{oport}" for h in last), timeout=5,
             what="the last answer to apply")


def query_times_since(dns, t0):
    with dns.lock:
        return [t for t in dns.query_times if t >= t0]


def test_respect_ttl_resolves_when_the_answer_expires(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3"])
    dns.set_a("app.test", ["127.0.0.2"])
    # A 1 s TTL against a 1 h interval: the change is followed within about
    # a TTL, which the interval alone would never do in this test.
    dns.ttl = 1
    _, port, aport = start(procs, dns, oport, discovery_extra=", respect_ttl: true",
                           interval="1h")
    assert served_by(port, 2) == {"o2": 2}
    dns.set_a("app.test", ["127.0.0.3"])
    t0 = time.monotonic()
    wait_for(lambda: served_by(port, 1) == {"o3": 1}, timeout=4,
             what="the new address within about a TTL")
    assert time.monotonic() - t0 < 3.0

    # A 3 s TTL against a 200 ms interval: about one resolution per 3 s,
    # where the interval alone makes fifteen.
    dns.ttl = 3
    time.sleep(1.5)                          # the 1 s answers run out first
    t1 = time.monotonic()
    time.sleep(6.5)
    n = len(query_times_since(dns, t1))
    assert 2 <= n <= 4, n                    # one query per resolution (A records)


def test_respect_ttl_srv(procs, dns):
    oport, _ = origins_on(procs, ["127.0.0.2"])
    dns.set_srv("_http._tcp.app.test", [(10, 1, oport, "a.app.test")])
    dns.set_a("a.app.test", ["127.0.0.2"])
    dns.ttl = 2
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, "{dns: _http._tcp.app.test, type: srv, "
                                     f"resolvers: ['{dns.address}'], interval: 100ms, "
                                     "respect_ttl: true}"), wait_ports=[port])
    assert served_by(port, 1) == {"o2": 1}
    t0 = time.monotonic()
    time.sleep(5)
    # Each resolution asks for the SRV records and the target's addresses:
    # two queries per 2 s TTL, where the 100 ms interval makes about 100.
    n = len(query_times_since(dns, t0))
    assert 2 <= n <= 8, n



def test_listed_and_discovered_backends_in_one_pool(procs, dns):
    # A fixed backend (o2, listed) and the ones DNS gives (o3, o4). The
    # listed one serves whatever DNS says, an empty answer included; an
    # address of it in DNS is not a second backend.
    oport, _ = origins_on(procs, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    dns.set_a("app.test", ["127.0.0.3"])
    pool_extra = f"    backends: [{{name: fixed, address: '127.0.0.2:{oport}'}}]\n"
    _, port, aport = start(procs, dns, oport, pool_extra=pool_extra)
    assert served_by(port, 10) == {"o2": 5, "o3": 5}
    assert sorted(status(aport)) == [f"127.0.0.3:{oport}", "fixed"]

    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    wait_for(lambda: sorted(status(aport)) == [f"127.0.0.3:{oport}", f"127.0.0.4:{oport}", "fixed"],
             timeout=5, what="o4 to join, and o2 not to come twice")
    time.sleep(0.5)
    assert sorted(status(aport)) == [f"127.0.0.3:{oport}", f"127.0.0.4:{oport}", "fixed"]
    assert served_by(port, 12) == {"o2": 4, "o3": 4, "o4": 4}

    dns.remove("app.test")                       # NXDOMAIN: the discovered ones drain
    wait_for(lambda: sorted(status(aport)) == ["fixed"], timeout=5,
             what="the discovered backends to leave")
    assert status(aport)["fixed"]["state"] == "UP"
    assert served_by(port, 4) == {"o2": 4}
