"""Active HTTP health checks: a backend whose /health fails leaves rotation
within interval × unhealthy_threshold and returns after healthy_threshold
passes; one failed check alone changes nothing."""
import http.client
import time

from harness import free_port, wait_for


def config(port, backends, health):
    lines = ["workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app", "pools:",
             "  - name: app", "    balance: round_robin", f"    health_check: {health}",
             "    backends:"]
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def post(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", path)
    assert c.getresponse().status == 200
    c.close()


def names(port, n=12):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    seen = []
    for _ in range(n):
        c.request("GET", "/")
        seen.append(c.getresponse().read().strip().decode())
    c.close()
    return seen


def test_http_check_flips_backend(procs):
    os_ = [procs.origin(f"b{i}") for i in (1, 2)]
    port = free_port()
    s = procs.sluice(config(port, [(o.origin_name, o.address) for o in os_],
                            "{type: http, path: /health, expect_status: 200, interval: 200ms,"
                            " timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2}"))
    time.sleep(0.5)
    assert set(names(port)) == {"b1", "b2"}
    t0 = time.monotonic()
    post(os_[1].port, "/health/fail")
    wait_for(lambda: any("backend=b2" in l and "to=DOWN" in l for l in s.log_lines("backend_state")),
             timeout=3, what="b2 DOWN")
    assert time.monotonic() - t0 <= 0.2 * 2 + 0.2 + 0.3
    assert "why=\"status 503\"" in s.stderr()
    assert set(names(port)) == {"b1"}
    t0 = time.monotonic()
    post(os_[1].port, "/health/ok")
    wait_for(lambda: any("backend=b2" in l and "to=UP" in l for l in s.log_lines("backend_state")),
             timeout=3, what="b2 UP")
    assert time.monotonic() - t0 <= 0.2 * 2 + 0.2 + 0.3
    assert set(names(port)) == {"b1", "b2"}


def test_single_failed_check_does_not_flap(procs):
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, [("b1", o.address)],
                            "{type: http, path: /health, interval: 300ms, timeout: 100ms,"
                            " healthy_threshold: 3, unhealthy_threshold: 3}"))
    time.sleep(0.4)
    post(o.port, "/health/fail")
    time.sleep(0.35)          # one, at most two, failed checks
    post(o.port, "/health/ok")
    time.sleep(1.0)
    assert "to=DOWN" not in s.stderr()
    assert names(port, 3) == ["b1"] * 3


def test_expect_body_and_separate_port(procs):
    o = procs.origin("b1")
    health = procs.origin("h1")         # the health endpoint lives on another port
    port = free_port()
    s = procs.sluice(config(port, [("b1", o.address)],
                            f"{{type: http, path: /, port: {health.port}, expect_body: nope,"
                            " interval: 100ms, timeout: 50ms, healthy_threshold: 1,"
                            " unhealthy_threshold: 1}"))
    # h1 answers "h1", never "nope": the check fails on the body.
    wait_for(lambda: "expected body text not found" in s.stderr(), timeout=3, what="body check")


def pool_config(port, backends, pool_extra):
    lines = ["workers: 1", "log: {level: debug, access: stdout}", "listeners:", "  - name: web",
             f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app", "pools:",
             "  - name: app", "    balance: round_robin", pool_extra.rstrip("\n"), "    backends:"]
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def test_outlier_detection_ejects_hung_backend_within_max_percent(procs):
    import socket
    hung = [socket.socket(), socket.socket()]
    for h in hung:
        h.bind(("127.0.0.1", 0))
        h.listen(64)       # accepts, never answers
    good = procs.origin("good")
    port = free_port()
    s = procs.sluice(pool_config(
        port, [("h1", f"127.0.0.1:{hung[0].getsockname()[1]}"),
               ("h2", f"127.0.0.1:{hung[1].getsockname()[1]}"), ("good", good.address)],
        "    retries: {attempts: 2, retry_on: [timeout], per_try_timeout: 200ms, backoff: 0s,"
        " budget_percent: 300}\n"
        "    outlier_detection: {consecutive_failures: 2, ejection_time: 10s,"
        " max_ejection_percent: 50}\n"))
    # Every request succeeds: per_try_timeout + retry hide the hung ones.
    for _ in range(8):
        assert names(port, 1) == ["good"]
    wait_for(lambda: "event=outlier_ejected" in s.stderr(), timeout=2, what="an ejection")
    time.sleep(0.3)
    # 50% of 3 backends: one may be ejected, never two.
    assert s.stderr().count("event=outlier_ejected") == 1
    assert "why=\"max_ejection_percent\"" in s.stderr()
    for h in hung:
        h.close()


def test_slow_start_ramps_share(procs):
    a, b = procs.origin("b1"), procs.origin("b2")
    port = free_port()
    s = procs.sluice(pool_config(
        port, [("b1", a.address), ("b2", b.address)],
        "    slow_start: 2s\n"
        "    health_check: {type: http, path: /health, interval: 100ms, timeout: 50ms,"
        " healthy_threshold: 1, unhealthy_threshold: 1}\n"))
    post(b.port, "/health/fail")
    wait_for(lambda: "to=DOWN" in s.stderr(), timeout=3, what="b2 DOWN")
    post(b.port, "/health/ok")
    wait_for(lambda: "to=UP" in s.stderr(), timeout=3, what="b2 UP")
    early = names(port, 100)
    time.sleep(1.6)
    late = names(port, 100)
    share_early = early.count("b2") / 100
    share_late = late.count("b2") / 100
    assert share_early < 0.25, share_early
    assert share_late > share_early + 0.15, (share_early, share_late)


def test_panic_mode_spreads_over_all(procs):
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port = free_port()
    s = procs.sluice(pool_config(
        port, [(o.origin_name, o.address) for o in os_],
        "    panic_threshold: 50\n"
        "    health_check: {type: http, path: /health, interval: 100ms, timeout: 50ms,"
        " healthy_threshold: 1, unhealthy_threshold: 1}\n"))
    post(os_[1].port, "/health/fail")
    wait_for(lambda: s.stderr().count("to=DOWN") == 1, timeout=3, what="one DOWN")
    assert set(names(port, 12)) == {"b1", "b3"}      # 2 of 3 eligible: no panic
    post(os_[2].port, "/health/fail")
    wait_for(lambda: s.stderr().count("to=DOWN") == 2, timeout=3, what="two DOWN")
    # 1 of 3 eligible is under 50%: every backend gets traffic again.
    assert set(names(port, 12)) == {"b1", "b2", "b3"}


def test_initial_state_down_until_first_pass(procs):
    o = procs.origin("b1")
    dead = free_port()
    port = free_port()
    s = procs.sluice(pool_config(
        port, [("b1", o.address), ("d", f"127.0.0.1:{dead}")],
        "    health_check: {type: tcp, interval: 1s, timeout: 200ms}\n"))
    assert "event=health_initial pool=app backend=d result=fail" in s.stderr()
    assert "event=health_initial pool=app backend=b1 result=pass" in s.stderr()
    # The dead backend never saw a request, not even a failed connect.
    assert names(port, 10) == ["b1"] * 10
    s.stop()
    assert "tries=2" not in s.stdout()
    assert "backend=d" not in s.stdout()


def origin_requests(port):
    """Requests the origin answered so far, this one excluded; with no
    traffic through sluice, that is the health checks it received (plus
    the test's own /health/fail and /health/ok)."""
    import json
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/stats")
    n = json.loads(c.getresponse().read())["requests"] - 1
    c.close()
    return n


def test_unhealthy_interval_paces_down_backend(procs):
    # interval 2s while UP, 200ms while DOWN. At interval alone a recovery
    # takes at least one full interval (1.8 s with jitter) between the two
    # passes healthy_threshold asks for; with unhealthy_interval, at most
    # 200ms × 2 + 200ms (phase).
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, [("b1", o.address)],
                            "{type: http, path: /health, interval: 2s, unhealthy_interval: 200ms,"
                            " timeout: 150ms, healthy_threshold: 2, unhealthy_threshold: 1}"))
    assert names(port, 2) == ["b1"] * 2
    post(o.port, "/health/fail")
    wait_for(lambda: any("to=DOWN" in l for l in s.log_lines("backend_state")),
             timeout=2 + 2 + 1, what="b1 DOWN")

    # While DOWN, a check every 180..200 ms: about 6 in 1.2 s (at interval,
    # at most one). Bounds leave room for a stalled VM either way.
    n0 = origin_requests(o.port)
    time.sleep(1.2)
    down_checks = origin_requests(o.port) - n0 - 1      # less the first /stats
    assert 3 <= down_checks <= 9, down_checks

    t0 = time.monotonic()
    post(o.port, "/health/ok")
    wait_for(lambda: any("to=UP" in l for l in s.log_lines("backend_state")),
             timeout=5, what="b1 UP")
    took = time.monotonic() - t0
    assert took <= 1.2, took

    # Back UP, back to interval: the next check is 1.8..2 s after the pass
    # that brought it UP, so none in the next 1.2 s (one tolerated, in case
    # the UP line was read late).
    n0 = origin_requests(o.port)
    time.sleep(1.2)
    up_checks = origin_requests(o.port) - n0 - 1
    assert up_checks <= 1, up_checks
    assert names(port, 2) == ["b1"] * 2


def test_unhealthy_interval_applies_from_start(procs):
    # A backend that is dead at start is DOWN before its first pass: it is
    # checked every unhealthy_interval from the first failed check on, so
    # it comes UP well before the first interval (1.8..2 s) has passed.
    live = procs.origin("b1")
    dead = free_port()
    port = free_port()
    s = procs.sluice(config(port, [("b1", live.address), ("d", f"127.0.0.1:{dead}")],
                            "{type: http, path: /health, interval: 2s, unhealthy_interval: 200ms,"
                            " timeout: 150ms, healthy_threshold: 2, unhealthy_threshold: 2}"))
    assert "event=health_initial pool=app backend=d result=fail" in s.stderr()
    procs.origin("d", port=dead)
    t0 = time.monotonic()
    wait_for(lambda: any("backend=d" in l and "to=UP" in l for l in s.log_lines("backend_state")),
             timeout=5, what="d UP")
    took = time.monotonic() - t0
    assert took <= 1.2, took
    assert set(names(port)) == {"b1", "d"}
    # The live backend was UP from the start and stays at interval.
    assert "backend=b1" not in "\n".join(s.log_lines("backend_state"))
