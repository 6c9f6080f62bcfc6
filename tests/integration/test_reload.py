"""Hot reload (core/reload.h): SIGHUP, POST /api/v1/reload and `sluice ctl
reload` start a new sluice that inherits the sockets and the backends' state;
the old one drains. Checked with real clients under load: no request fails,
added backends get traffic, removed ones get none and finish what they
have, a bad config or a new process that cannot start changes nothing."""
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

from harness import SLUICE, free_port, http_get, pid_running, wait_for


def http_config(port, admin_port, backends, workers=2, extra_pool="", health=True,
                drain_timeout="10s", listeners_extra=""):
    lines = [f"workers: {workers}", f"drain_timeout: {drain_timeout}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}",
             "log: {level: info, access: \"off\"}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app"]
    if listeners_extra:
        lines.append(listeners_extra.rstrip("\n"))
    lines += ["pools:", "  - name: app", "    balance: round_robin"]
    if health:
        lines.append("    health_check: {type: http, path: /health, interval: 300ms,"
                     " timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2}")
    lines.append("    backends:")
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    if extra_pool:
        lines.append(extra_pool.rstrip("\n"))
    return "\n".join(lines) + "\n"


def rewrite(s, text):
    with open(s.config, "w") as f:
        f.write(text)


def api(admin_port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def status(admin_port):
    return api(admin_port, "GET", "/api/v1/status")[1]


def backend(st, pool, name):
    p = next(p for p in st["pools"] if p["name"] == pool)
    return next((b for b in p["backends"] if b["name"] == name), None)


def origin_count(o):
    """Requests the origin has answered, this /stats included (the tests
    that compare counts allow for their own /stats calls and turn health
    checks off)."""
    return json.loads(http_get(o.port, "/stats")[2])["requests"]


def post(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("POST", path)
        return c.getresponse().status
    finally:
        c.close()


class Load:
    """Keep-alive clients and new-connection clients, counting failures,
    until stopped (bounded: at most 30 s)."""

    def __init__(self, port, conns=8, path="/"):
        self.port, self.path = port, path
        self.ok, self.failed, self.errors = 0, 0, []
        self.lock = threading.Lock()
        self.stop_at = time.monotonic() + 30
        self.threads = [threading.Thread(target=self.run, args=(i % 2 == 0,)) for i in range(conns)]
        for t in self.threads:
            t.start()

    def run(self, keepalive):
        c = None
        while time.monotonic() < self.stop_at:
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", self.path, headers={} if keepalive else {"Connection": "close"})
                r = c.getresponse()
                r.read()
                ok = r.status == 200
                if r.will_close or not keepalive:
                    c.close()
                    c = None
                with self.lock:
                    self.ok += ok
                    self.failed += not ok
                    if not ok:
                        self.errors.append(f"status {r.status}")
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failed += 1
                    self.errors.append(repr(e))
                if c:
                    c.close()
                c = None

    def finish(self):
        self.stop_at = 0
        for t in self.threads:
            t.join(15)
        return self.ok, self.failed


def test_reload_under_load_adds_and_removes_backends(procs):
    b1, b2, b3 = (procs.origin(n) for n in ("b1", "b2", "b3"))
    port, admin_port = free_port(), free_port()
    s = procs.sluice(http_config(port, admin_port, [("b1", b1.address), ("b2", b2.address)],
                                 health=False))
    old_pid = s.pid
    # A monitor on a kept-alive admin connection (to the old process).
    monitor = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    monitor.request("GET", "/healthz")
    assert monitor.getresponse().read() == b"ok\n"
    load = Load(port)
    time.sleep(1.0)
    rewrite(s, http_config(port, admin_port, [("b1", b1.address), ("b3", b3.address)],
                           health=False))
    # A slow request keeps the old process draining for a while.
    slow = threading.Thread(target=lambda: http_get(port, "/delay/2000", timeout=10))
    slow.start()
    time.sleep(0.2)
    new_pid = s.reload()
    assert new_pid != old_pid
    # The service is not going away: the old process's /healthz stays 200.
    assert s.alive()
    monitor.request("GET", "/healthz")
    r = monitor.getresponse()
    assert (r.status, r.read()) == (200, b"ok\n")
    monitor.close()
    slow.join(10)
    time.sleep(0.3)                 # requests already on their way to b2 finish
    b2_before = origin_count(b2)
    b3_before = origin_count(b3)
    time.sleep(1.0)
    ok, failed = load.finish()
    assert failed == 0, load.errors[:5]
    assert ok > 200
    # b2 is out of the config: nothing new reached it; b3 serves.
    assert origin_count(b2) == b2_before + 1     # + the first /stats
    assert origin_count(b3) - b3_before > 50
    # The old process drained and exited on its own; the new one answers.
    wait_for(lambda: s.p.poll() is not None, timeout=15, what="the old process to exit")
    assert s.p.returncode == 0
    st = status(admin_port)
    assert st["pid"] == new_pid
    assert [b["name"] for b in st["pools"][0]["backends"]] == ["b1", "b3"]
    assert "event=started" in s.stderr() and "reloaded=true" in s.stderr()


def test_removed_backend_finishes_its_request(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    port, admin_port = free_port(), free_port()
    s = procs.sluice(http_config(port, admin_port, [("b2", b2.address)], health=False))
    result = {}

    def slow():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        c.request("GET", "/delay/2000")
        r = c.getresponse()
        result["status"], result["body"] = r.status, r.read()
        c.close()

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: status(admin_port)["pools"][0]["backends"][0]["active_requests"] == 1,
             what="the slow request in flight")
    before = origin_count(b2)
    rewrite(s, http_config(port, admin_port, [("b1", b1.address)], health=False))
    s.reload()
    for _ in range(20):
        assert http_get(port, "/")[0] == 200
    t.join(10)
    assert result.get("status") == 200
    # Nothing new went to b2: its count grew by the slow answer (counted when
    # answered) and the first /stats.
    assert origin_count(b2) == before + 2
    wait_for(lambda: s.p.poll() is not None, timeout=15, what="the old process to exit")


def test_removed_backend_closed_at_drain_timeout(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    port, admin_port = free_port(), free_port()
    s = procs.sluice(http_config(port, admin_port, [("b2", b2.address)], health=False,
                                 drain_timeout="1s"))
    result = {}

    def slow():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            c.request("GET", "/delay/8000")
            result["status"] = c.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            result["error"] = repr(e)
        c.close()

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: status(admin_port)["pools"][0]["backends"][0]["active_requests"] == 1,
             what="the slow request in flight")
    rewrite(s, http_config(port, admin_port, [("b1", b1.address)], health=False,
                           drain_timeout="1s"))
    start = time.monotonic()
    s.reload()
    wait_for(lambda: s.p.poll() is not None, timeout=10, what="the old process to exit")
    t.join(10)
    # Closed at drain_timeout, well before the 8 s answer.
    assert time.monotonic() - start < 5
    assert "status" not in result or result["status"] != 200, result
    assert "event=drain_timeout" in s.stderr()


def test_bad_config_changes_nothing(procs):
    b1 = procs.origin("b1")
    port, admin_port = free_port(), free_port()
    good = http_config(port, admin_port, [("b1", b1.address)])
    s = procs.sluice(good)
    rewrite(s, good.replace("balance: round_robin", "balance: round_robn"))
    os.kill(s.pid, signal.SIGHUP)
    wait_for(lambda: s.log_lines("reload_rejected"), what="the reload to be rejected")
    err = s.stderr()
    assert f"{s.config}:" in err and "unknown balance 'round_robn'" in err
    # FILE:LINE:COL, as `sluice check` gives it.
    line = next(l for l in err.splitlines() if "round_robn" in l)
    assert line.startswith(f"{s.config}:") and line.split(":")[1].isdigit()
    assert http_get(port, "/")[0] == 200
    assert status(admin_port)["pid"] == s.pid and s.alive()
    # The API says the same, with the errors; ctl prints them and fails.
    code, j = api(admin_port, "POST", "/api/v1/reload")
    assert code == 400 and any("round_robn" in d for d in j["details"]), j
    r = subprocess.run([SLUICE, "ctl", "--admin", f"127.0.0.1:{admin_port}", "reload"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "round_robn" in r.stderr
    assert s.reload_pids() == []                # no new process was started


def test_new_process_that_cannot_bind_changes_nothing(procs):
    b1 = procs.origin("b1")
    port, admin_port = free_port(), free_port()
    s = procs.sluice(http_config(port, admin_port, [("b1", b1.address)]))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        busy = taken.getsockname()[1]
        rewrite(s, http_config(port, admin_port, [("b1", b1.address)], listeners_extra=(
            f"  - name: other\n    bind: 127.0.0.1:{busy}\n    mode: http\n    pool: app\n")))
        os.kill(s.pid, signal.SIGHUP)
        wait_for(lambda: s.log_lines("reload_failed"), timeout=20, what="the reload to fail")
        # ctl says so too, from what the status API reports.
        r = subprocess.run([SLUICE, "ctl", "--admin", f"127.0.0.1:{admin_port}", "reload"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert "reload failed: the new process exited with status 1" in r.stderr, r.stderr
    finally:
        taken.close()
    assert "cannot bind" in s.stderr()
    st = status(admin_port)
    assert st["pid"] == s.pid and s.alive()
    assert st["reload"]["result"] == "failed" and "status 1" in st["reload"]["why"]
    for _ in range(10):
        assert http_get(port, "/")[0] == 200
    # A later good reload still works.
    rewrite(s, http_config(port, admin_port, [("b1", b1.address)]))
    assert s.reload() != s.pid


def test_operator_state_and_counters_survive(procs):
    b1, b2, b3 = (procs.origin(n) for n in ("b1", "b2", "b3"))
    port, admin_port = free_port(), free_port()
    cfg = http_config(port, admin_port, [("b1", b1.address), ("b2", b2.address),
                                         ("b3", b3.address)])
    s = procs.sluice(cfg)
    for _ in range(30):
        assert http_get(port, "/")[0] == 200
    assert api(admin_port, "POST", "/api/v1/pools/app/backends/b1/drain")[0] == 200
    assert api(admin_port, "PUT", "/api/v1/pools/app/backends/b2/weight", '{"weight": 7}')[0] == 200
    before = status(admin_port)
    r = subprocess.run([SLUICE, "ctl", "--admin", f"127.0.0.1:{admin_port}", "reload"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: s.serving_pid() != s.pid, what="the handover in the log")
    new_pid = s.serving_pid()
    assert r.stdout.strip() == f"reloaded: pid {s.pid} handed over to pid {new_pid}"
    # The old process stops accepting admin connections as it hands over.
    wait_for(lambda: status(admin_port)["pid"] == new_pid, what="the new process answering")
    after = status(admin_port)
    assert backend(after, "app", "b1")["state"] == "DRAINING"
    assert backend(after, "app", "b2")["weight"] == 7
    assert backend(after, "app", "b3")["weight"] == 1
    for name in ("b1", "b2", "b3"):
        assert (backend(after, "app", name)["requests_total"] >=
                backend(before, "app", name)["requests_total"] > 0)
    # A weight the config file changes wins over the operator's.
    cfg2 = cfg.replace(f"{{name: b2, address: {b2.address}}}",
                       f"{{name: b2, address: {b2.address}, weight: 3}}")
    rewrite(s, cfg2)
    s.reload()
    assert backend(status(admin_port), "app", "b2")["weight"] == 3
    assert backend(status(admin_port), "app", "b1")["state"] == "DRAINING"


def test_failing_backend_stays_down_across_reload(procs):
    """A backend the old process had DOWN does not come back on the new
    process's first passing check: it needs healthy_threshold passes, as
    it would have without the reload."""
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    port, admin_port = free_port(), free_port()
    cfg = http_config(port, admin_port, [("b1", b1.address), ("b2", b2.address)]).replace(
        "interval: 300ms", "interval: 1500ms").replace("healthy_threshold: 2", "healthy_threshold: 3")
    s = procs.sluice(cfg)
    post(b2.port, "/health/fail")
    wait_for(lambda: backend(status(admin_port), "app", "b2")["state"] == "DOWN", timeout=10,
             what="b2 DOWN")
    post(b2.port, "/health/ok")
    s.reload()
    st = backend(status(admin_port), "app", "b2")
    assert st["state"] == "DOWN", st
    # ... and it comes back after the thresholds, not never.
    wait_for(lambda: backend(status(admin_port), "app", "b2")["state"] == "UP", timeout=15,
             what="b2 UP again")


def test_tcp_session_survives_reload(procs):
    echo = procs.origin("e1", mode="tcp-echo")
    port, admin_port = free_port(), free_port()
    cfg = "\n".join([
        "workers: 1", "drain_timeout: 20s", f"admin: {{listen: 127.0.0.1:{admin_port}}}",
        "listeners:", "  - name: t", f"    bind: 127.0.0.1:{port}", "    mode: tcp",
        "    pool: p", "pools:", "  - name: p", "    backends:",
        f"      - {{name: e1, address: {echo.address}}}", ""])
    s = procs.sluice(cfg)
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"before\n")
    assert c.recv(100) == b"before\n"
    old = s.pid
    s.reload()
    # The old process keeps the session it has; the new one takes new ones.
    c.sendall(b"after\n")
    assert c.recv(100) == b"after\n"
    c2 = socket.create_connection(("127.0.0.1", port), timeout=5)
    c2.sendall(b"new\n")
    assert c2.recv(100) == b"new\n"
    c2.close()
    assert pid_running(old)
    c.close()
    wait_for(lambda: s.p.poll() is not None, timeout=10, what="the old process to exit")


def test_systemd_learns_the_new_main_pid(procs, tmp_path):
    """sd_notify(3) over $NOTIFY_SOCKET, as systemd's Type=notify with
    NotifyAccess=all reads it: READY=1 at start, and MAINPID= of the new
    process on a reload (before the old one exits)."""
    b1 = procs.origin("b1")
    port, admin_port = free_port(), free_port()
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        s = procs.sluice(http_config(port, admin_port, [("b1", b1.address)]),
                         env=dict(os.environ, NOTIFY_SOCKET=path))
        msg = sock.recv(4096).decode()
        assert set(msg.split("\n")) == {"READY=1", f"MAINPID={s.pid}"}, msg
        new_pid = s.reload()
        msg = sock.recv(4096).decode()
        assert set(msg.split("\n")) == {"READY=1", f"MAINPID={new_pid}"}, msg
    finally:
        sock.close()
