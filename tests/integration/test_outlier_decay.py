"""Removing dead backends, two gaps closed (docs/health.md, docs/discovery.md):

- Outlier detection's ejection multiplier decays: each ejection raises it,
  each outlier_detection.interval without one lowers it by one, so a backend
  that behaved for long enough is ejected for the base ejection_time again;
  no ejection lasts longer than max_ejection_time; a reload keeps the
  multiplier.
- Slow start covers every way a backend joins traffic in a pool without
  health checks: one DNS discovery adds while serving, one an operator
  enables after a drain, and one whose ejection ends.

Ejections are read from sluice's log lines (event=outlier_ejected carries
ejection_ms and multiplier), which the code writes from the same values it
acts on. Every wait is bounded; no assertion is on how long anything took.
"""
import http.client
import json
import re
import signal
import subprocess
import time

import pytest

from dns_server import DnsServer
from harness import SLUICE, free_port, http_get, wait_for
from test_health import names

EJECTED = re.compile(r"event=outlier_ejected pool=app backend=(\S+) consecutive_failures=\d+ "
                     r"ejection_ms=(\d+) multiplier=(\d+)")


def config(port, backends, pool_extra, admin_port=None):
    lines = ["workers: 1", "log: {level: info, access: off}"]
    if admin_port:
        lines.append(f"admin: {{listen: 127.0.0.1:{admin_port}}}")
    lines += ["listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
              "    pool: app", "pools:", "  - name: app", "    balance: round_robin",
              pool_extra.rstrip("\n")]
    if backends:
        lines.append("    backends:")
        lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def ejections(s, backend="bad"):
    """(ejection_ms, multiplier) of each ejection of backend, in order."""
    return [(int(m.group(2)), int(m.group(3))) for m in EJECTED.finditer(s.stderr())
            if m.group(1) == backend]


def drive_until(port, pred, timeout=10, what="condition"):
    """Send requests (each on its own connection) until pred() holds: a dead
    backend fails the connect and the request moves on to a live one, so
    the client sees 200 while outlier detection counts the failure."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert http_get(port)[0] == 200
    return pred()


def admin(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def status(admin_port):
    st, data = admin(admin_port, "GET", "/api/v1/status")
    assert st == 200
    return {b["name"]: b for b in json.loads(data)["pools"][0]["backends"]}


def state_metric(admin_port, backend):
    """The state sluice_backend_state says backend is in."""
    _, m = admin(admin_port, "GET", "/metrics")
    hits = re.findall(r'^sluice_backend_state\{pool="app",backend="%s",state="(\w+)"\} 1$'
                      % re.escape(backend), m.decode(), re.M)
    assert len(hits) == 1, hits
    return hits[0]


def eject_again(s, port, n):
    """Wait for the n-th ejection's end, then fail the backend until the
    (n+1)-th ejection; returns its (ejection_ms, multiplier)."""
    wait_for(lambda: len(s.log_lines("outlier_returned")) >= n, timeout=10,
             what=f"ejection {n} to end")
    drive_until(port, lambda: len(ejections(s)) > n, what=f"ejection {n + 1}")
    return ejections(s)[n]


# ---- the ejection multiplier ----

def test_multiplier_decays_to_the_base_ejection_time(procs):
    # `bad` refuses connections: its requests fail over to `good`, and two
    # failures in a row eject it. Ejected twice in a row, the second
    # ejection is twice as long. Then it serves for two intervals without
    # an ejection: the multiplier is back to 0, and the next ejection is
    # the base time again (before, it would have been 3 x).
    good = procs.origin("good")
    bad_port, port = free_port(), free_port()
    s = procs.sluice(config(port, [("good", good.address), ("bad", f"127.0.0.1:{bad_port}")],
                            "    outlier_detection: {consecutive_failures: 2, ejection_time: 200ms,"
                            " interval: 2s, max_ejection_percent: 50}\n"), wait_ports=[port])
    drive_until(port, lambda: ejections(s), what="the first ejection")
    assert ejections(s) == [(200, 1)]
    assert eject_again(s, port, 1) == (400, 2)

    wait_for(lambda: len(s.log_lines("outlier_returned")) >= 2, timeout=10,
             what="the second ejection to end")
    revived = procs.origin("bad", port=bad_port)
    assert set(names(port, 10)) == {"good", "bad"}      # healthy, taking its share
    # One step down per interval without an ejection (2 s each here).
    wait_for(lambda: "backend=bad multiplier=0 " in s.stderr(), timeout=15,
             what="the multiplier to decay to 0")
    steps = [l for l in s.log_lines("outlier_multiplier") if "backend=bad" in l]
    assert [re.search(r"multiplier=(\d+)", l).group(1) for l in steps] == ["1", "0"], steps
    assert "next_ejection_ms=200" in steps[-1]
    assert set(names(port, 10)) == {"good", "bad"}
    assert len(ejections(s)) == 2                      # it served, nothing ejected it

    revived.stop(signal.SIGKILL)
    drive_until(port, lambda: len(ejections(s)) > 2, what="the third ejection")
    assert ejections(s)[2] == (200, 1)


def test_ejection_time_is_capped_by_max_ejection_time(procs):
    # 200 ms, 400 ms, then 500 ms (the cap) however often it is ejected; the
    # multiplier stops where the cap is reached, so it has only that far to
    # decay. interval: 1h keeps any decay out of this test.
    good = procs.origin("good")
    bad_port, port, aport = free_port(), free_port(), free_port()
    s = procs.sluice(config(port, [("good", good.address), ("bad", f"127.0.0.1:{bad_port}")],
                            "    outlier_detection: {consecutive_failures: 2, ejection_time: 200ms,"
                            " max_ejection_time: 500ms, interval: 1h, max_ejection_percent: 50}\n",
                            admin_port=aport), wait_ports=[port])
    drive_until(port, lambda: ejections(s), what="the first ejection")
    for n in range(1, 4):
        eject_again(s, port, n)
    assert ejections(s) == [(200, 1), (400, 2), (500, 3), (500, 3)]
    _, m = admin(aport, "GET", "/metrics")
    assert 'sluice_outlier_ejections_total{pool="app",backend="bad"} 4' in m.decode()
    assert "outlier_multiplier" not in s.stderr()


def test_reload_keeps_the_multiplier_of_a_backend_not_ejected_now(procs):
    # Ejected twice and back in rotation when sluice reloads: the new
    # process ejects it for 3 x, as the old one would have. A reload must
    # not forgive a backend that keeps failing.
    good = procs.origin("good")
    bad_port, port = free_port(), free_port()
    s = procs.sluice(config(port, [("good", good.address), ("bad", f"127.0.0.1:{bad_port}")],
                            "    outlier_detection: {consecutive_failures: 2, ejection_time: 200ms,"
                            " interval: 1h, max_ejection_percent: 50}\n"), wait_ports=[port])
    drive_until(port, lambda: ejections(s), what="the first ejection")
    assert eject_again(s, port, 1) == (400, 2)
    wait_for(lambda: len(s.log_lines("outlier_returned")) >= 2, timeout=10,
             what="the second ejection to end")
    s.reload()
    drive_until(port, lambda: len(ejections(s)) > 2, what="an ejection after the reload")
    assert ejections(s)[2] == (600, 3)


def test_outlier_config_errors_point_at_the_key(tmp_path):
    def check(outlier):
        path = tmp_path / "c.yaml"
        path.write_text("listeners:\n  - {name: w, bind: 127.0.0.1:1, mode: http, pool: app}\n"
                        "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:2}]\n"
                        f"    outlier_detection: {outlier}\n")
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, timeout=10)
        return r.returncode, (r.stdout + r.stderr).decode()

    rc, out = check("{ejection_time: 1m, max_ejection_time: 30s}")
    assert rc == 1
    assert re.search(r"c\.yaml:6:63: error: pool 'app': outlier_detection\.max_ejection_time 30s "
                     r"is shorter than outlier_detection\.ejection_time 1m", out), out
    rc, out = check("{interval: 0s}")
    assert rc == 1 and re.search(r"c\.yaml:6:\d+: error: .*outlier_detection\.interval", out), out
    rc, out = check("{interval: soon}")
    assert rc == 1 and "bad duration 'soon'" in out, out
    # Without max_ejection_time, the cap is 300 s, or ejection_time if longer.
    assert check("{ejection_time: 10m}")[0] == 0
    assert check("{ejection_time: 2s, max_ejection_time: 2s, interval: 250ms}")[0] == 0


# ---- slow start wherever a backend joins ----

@pytest.fixture
def dns():
    d = DnsServer()
    yield d
    d.stop()


def test_discovered_backend_without_checks_slow_starts(procs, dns):
    # A pool without health checks: a backend DNS adds while sluice serves
    # takes traffic at once, so it ramps from then (SLOW_START in the status
    # API and in sluice_backend_state), and its share grows. The first
    # answer's backends start together, at full weight.
    oport = free_port()
    procs.origin("o2", host="127.0.0.2", port=oport)
    procs.origin("o3", host="127.0.0.3", port=oport)
    dns.set_a("app.test", ["127.0.0.2"])
    port, aport = free_port(), free_port()
    procs.sluice(config(port, [], f"    discovery: {{dns: app.test, port: {oport}, "
                                  f"resolvers: ['{dns.address}'], interval: 100ms}}\n"
                                  "    slow_start: 5s\n", admin_port=aport), wait_ports=[port])
    o2, o3 = f"127.0.0.2:{oport}", f"127.0.0.3:{oport}"
    assert status(aport)[o2]["state"] == "UP"
    dns.set_a("app.test", ["127.0.0.2", "127.0.0.3"])
    wait_for(lambda: o3 in status(aport), timeout=5, what="o3 to join")
    assert status(aport)[o3]["state"] == "SLOW_START"
    assert state_metric(aport, o3) == "SLOW_START"
    early = names(port, 100).count("o3")
    wait_for(lambda: status(aport)[o3]["state"] == "UP", timeout=20, what="the ramp to end")
    assert state_metric(aport, o3) == "UP"
    late = names(port, 100).count("o3")
    # From 10% of its weight (about 1 request in 11) to all of it (1 in 2).
    assert 0 < early < late, (early, late)
    assert late >= 40, late


def test_enable_after_drain_without_checks_slow_starts(procs):
    a, b = procs.origin("b1"), procs.origin("b2")
    port, aport = free_port(), free_port()
    procs.sluice(config(port, [("b1", a.address), ("b2", b.address)], "    slow_start: 30s\n",
                        admin_port=aport), wait_ports=[port])
    assert admin(aport, "POST", "/api/v1/pools/app/backends/b2/drain")[0] == 200
    assert status(aport)["b2"]["state"] == "DRAINING"
    assert admin(aport, "POST", "/api/v1/pools/app/backends/b2/enable")[0] == 200
    assert status(aport)["b2"]["state"] == "SLOW_START"
    assert state_metric(aport, "b2") == "SLOW_START"
    assert 0 < names(port, 100).count("b2") <= 30


def test_backend_back_from_an_ejection_slow_starts(procs):
    # HAProxy's choice, not Envoy's: a backend whose ejection ended failed
    # real traffic a moment ago, so it gets a small share first and a full
    # one only if it keeps serving (a new run of failures ejects it again).
    good = procs.origin("good")
    bad_port, port, aport = free_port(), free_port(), free_port()
    s = procs.sluice(config(port, [("good", good.address), ("bad", f"127.0.0.1:{bad_port}")],
                            "    slow_start: 30s\n"
                            "    outlier_detection: {consecutive_failures: 2, ejection_time: 300ms,"
                            " max_ejection_percent: 50}\n", admin_port=aport), wait_ports=[port])
    drive_until(port, lambda: ejections(s), what="an ejection")
    procs.origin("bad", port=bad_port)
    wait_for(lambda: s.log_lines("outlier_returned"), timeout=10, what="the ejection to end")
    assert status(aport)["bad"]["state"] == "SLOW_START"
    assert 0 < names(port, 100).count("bad") <= 30
