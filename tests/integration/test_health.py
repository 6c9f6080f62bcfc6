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
