"""Hiding failures from clients: retries (only when safe, within a budget),
per-try timeouts, and circuit breaking, through the real binary."""
import http.client
import json
import socket
import threading
import time

from harness import AcceptLoop, free_port

RETRIES = ("    retries: {attempts: 2, retry_on: [connect_failure, reset, timeout, 502, 503, 504],"
           " backoff: 0s%s}\n")


def config(port, backends, pool_extra="", health=True, workers=1):
    lines = [f"workers: {workers}", "drain_timeout: 5s", "log: {level: info, access: stdout}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app", "pools:", "  - name: app", "    balance: round_robin",
             "    timeouts: {connect: 500ms, upstream_response: 5s}"]
    if pool_extra:
        lines.append(pool_extra.rstrip("\n"))
    if health:
        lines.append("    health_check: {type: tcp, interval: 200ms, timeout: 100ms,"
                     " healthy_threshold: 1, unhealthy_threshold: 1}")
    lines.append("    backends:")
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def request(port, path="/", method="GET", headers=None, body=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def origin_requests(o):
    return json.loads(request(o.port, "/stats")[1])["requests"] - 1


def test_kill_one_origin_under_load_no_failed_gets(procs):
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port = free_port()
    procs.sluice(config(port, [(o.origin_name, o.address) for o in os_], RETRIES % ""))
    stop = time.monotonic() + 3.0
    results = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def client():
        # Keep-alive clients, like a real load generator; /delay keeps
        # requests in flight on the origin that dies.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            try:
                c.request("GET", "/delay/20")
                r = c.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with lock:
                results["ok" if ok else "failed"] += 1
        c.close()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os_[1].stop(9)   # kill -9 mid-traffic
    for t in threads:
        t.join(15)
    assert results["failed"] == 0, results
    assert results["ok"] > 100, results


class ResettingOrigin(AcceptLoop):
    """Accepts, reads a request, then resets the connection; counts requests."""

    def __init__(self):
        self.seen = []
        super().__init__(self._reset)

    def _reset(self, c):
        data = b""
        c.settimeout(2)
        try:
            while b"\r\n\r\n" not in data:
                d = c.recv(4096)
                if not d:
                    break
                data += d
        except OSError:
            pass
        if data:
            self.seen.append(data.split(b"\r\n")[0])
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()


def test_post_without_idempotency_key_is_not_replayed(procs):
    bad = ResettingOrigin()
    good = procs.origin("good")
    port = free_port()
    procs.sluice(config(port, [("bad", f"127.0.0.1:{bad.port}"), ("good", good.address)],
                        RETRIES % "", health=False))
    # Round robin starts at "bad": the POST reaches it, is reset, and must
    # not be sent again.
    status, _ = request(port, "/echo", "POST", body=b"pay once")
    assert status == 502
    assert bad.seen == [b"POST /echo HTTP/1.1"]
    assert origin_requests(good) == 0
    # The same POST with an Idempotency-Key may be replayed elsewhere.
    bad.seen.clear()
    for _ in range(2):
        status, body = request(port, "/echo", "POST", headers={"Idempotency-Key": "k1"},
                               body=b"pay once")
        assert status == 200
    assert len(bad.seen) == 1            # one of the two went to bad first...
    # ...and both ended on good (the count includes our earlier /stats call).
    assert origin_requests(good) == 3
    # A GET is retried.
    assert request(port, "/")[0] == 200
    bad.stop()


def test_all_503_retries_stay_within_budget(procs):
    os_ = [procs.origin(f"b{i}") for i in (1, 2, 3)]
    port = free_port()
    procs.sluice(config(port, [(o.origin_name, o.address) for o in os_],
                        RETRIES % ", budget_percent: 20", health=False))
    n = 300
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(n):
        c.request("GET", "/status/503")
        r = c.getresponse()
        r.read()
        assert r.status == 503
    c.close()
    upstream = sum(origin_requests(o) for o in os_)
    # Every request feeds 0.2 retries into the budget, which starts with 3.
    assert n <= upstream <= n * 1.2 + 3, upstream


def test_hung_backend_hidden_by_per_try_timeout(procs):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)        # accepts (kernel backlog) and never answers
    good = procs.origin("good")
    port = free_port()
    procs.sluice(config(port, [("hung", f"127.0.0.1:{hung.getsockname()[1]}"),
                               ("good", good.address)],
                        RETRIES % ", per_try_timeout: 300ms", health=False))
    for _ in range(4):
        t0 = time.monotonic()
        status, body = request(port, "/")
        assert status == 200 and body == b"good\n"
        assert time.monotonic() - t0 < 1.5
    hung.close()


def test_circuit_breaker_rejects_at_once(procs):
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, [("b1", o.address)],
                            "    circuit_breaker: {max_requests: 2}\n", health=False))
    results = []
    lock = threading.Lock()

    def one():
        t0 = time.monotonic()
        st, _ = request(port, "/delay/600")
        with lock:
            results.append((st, time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(5)
    ok = [r for r in results if r[0] == 200]
    rejected = [r for r in results if r[0] == 503]
    assert len(ok) == 2 and len(rejected) == 3, results
    assert all(d < 0.3 for _, d in rejected), results
    assert "event=circuit_breaker" in s.stderr()
    # Once the slow ones finished, requests pass again.
    assert request(port, "/")[0] == 200


def test_backend_reset_while_client_streams_body(procs):
    """An origin that resets each connection after its first read, while
    clients are still streaming request bodies: the client's next bytes and
    the backend's reset often arrive in one epoll batch, and the failed send
    must not free the upstream connection under its pending event (found by
    bench/failover.py under ASan: a use-after-free in the event loop). Every
    client gets a 502 or a closed connection; sluice stays up and serves."""
    good = procs.origin("good")
    rst = ResettingOrigin()     # reads the head, then resets mid-body
    port = free_port()
    cfg = config(port, [("rst", rst.address)], health=False)
    cfg = cfg.replace("    pool: app\n", "    pool: app\n    routes:\n"
                      "      - {match: {path: /good}, pool: good}\n", 1)
    cfg += ("  - name: good\n    backends:\n"
            f"      - {{name: g, address: {good.address}}}\n")
    s = procs.sluice(cfg)
    deadline = time.monotonic() + 4.0
    outcomes = {"502": 0, "closed": 0, "other": 0, "refused": 0}
    lock = threading.Lock()
    chunk = b"y" * 4096

    def client():
        while time.monotonic() < deadline:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                with lock:
                    outcomes["refused"] += 1     # sluice is gone
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kind = "other"
            try:
                c.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
                for _ in range(256):
                    c.sendall(chunk)
                resp = c.recv(4096)
                kind = "502" if resp.startswith(b"HTTP/1.1 502") else ("closed" if not resp else "other")
            except OSError:
                kind = "closed"
            finally:
                c.close()
            with lock:
                outcomes[kind] += 1

    threads = [threading.Thread(target=client) for _ in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    rst.stop()
    assert s.alive(), s.stderr()[-3000:]
    assert outcomes["other"] == 0 and outcomes["refused"] == 0, outcomes
    assert outcomes["502"] + outcomes["closed"] >= 50, outcomes
    status, body = request(port, "/good")
    assert status == 200, body


def test_retry_on_without_connect_failure_does_not_fail_over(procs):
    # retry_on lists what may be tried again; a pool whose list leaves out
    # connect_failure (NGINX: proxy_next_upstream without `error`) answers a
    # refused connect with 502 instead of moving on. sluice ignored the
    # list for connect failures and always moved on. Without a retries
    # block, and with connect_failure listed, a refused connect still moves
    # on (the default, unchanged).
    o = procs.origin("b1")
    dead = free_port()          # nothing listens: every connect is refused
    backends = [("dead", f"127.0.0.1:{dead}"), ("b1", o.address)]
    for extra, want in (("    retries: {attempts: 2, retry_on: [503], backoff: 0s}", {200, 502}),
                        ("    retries: {attempts: 2, retry_on: [connect_failure], backoff: 0s}",
                         {200}),
                        ("", {200})):
        port = free_port()
        s = procs.sluice(config(port, backends, extra, health=False))
        got = {request(port)[0] for _ in range(6)}
        assert got == want, (extra, got)
        s.stop()
