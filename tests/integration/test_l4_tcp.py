"""L4 TCP through the real binary: distribution, failover, byte integrity,
half-close, concurrency."""
import hashlib
import socket
import threading
import time

from harness import free_port, http_get, tcp_config, wait_for


def three_origins(procs, mode="http", extra=()):
    return [procs.origin(f"b{i}", mode, extra) for i in (1, 2, 3)]


def test_round_robin_spreads_evenly(procs):
    os_ = three_origins(procs)
    port = free_port()
    procs.sluice(tcp_config(port, [(o.origin_name, o.address) for o in os_]), [port])
    seen = {}
    for _ in range(30):
        status, headers, body = http_get(port)
        assert status == 200
        seen[body.strip().decode()] = seen.get(body.strip().decode(), 0) + 1
    assert seen == {"b1": 10, "b2": 10, "b3": 10}


def test_refusing_backend_costs_client_nothing(procs):
    os_ = three_origins(procs)
    dead = free_port()   # nothing listens here: connect is refused
    backends = [(o.origin_name, o.address) for o in os_[:2]] + [("dead", f"127.0.0.1:{dead}")]
    port = free_port()
    s = procs.sluice(tcp_config(port, backends), [port])
    for _ in range(60):
        status, _, body = http_get(port)
        assert status == 200
        assert body.strip() in (b"b1", b"b2")
    s.stop()
    # The access log shows the retries that hid the dead backend.
    assert "tries=2" in s.stdout()
    assert "end=connect_failed" not in s.stdout()


def test_least_conn_and_p2c_serve(procs):
    os_ = three_origins(procs)
    for balance in ("least_conn", "p2c"):
        port = free_port()
        procs.sluice(tcp_config(port, [(o.origin_name, o.address) for o in os_], balance=balance),
                     [port])
        seen = set()
        for _ in range(60):
            status, _, body = http_get(port)
            assert status == 200
            seen.add(body.strip())
        assert seen == {b"b1", b"b2", b"b3"}


def test_health_check_removes_dead_and_restores(procs):
    os_ = three_origins(procs)
    interval, fall, rise = 0.2, 2, 2
    port = free_port()
    s = procs.sluice(tcp_config(
        port, [(o.origin_name, o.address) for o in os_],
        health=f"{{type: tcp, interval: 200ms, timeout: 100ms, "
               f"healthy_threshold: {rise}, unhealthy_threshold: {fall}}}"), [port])
    time.sleep(0.5)
    victim = os_[1]
    killed_at = time.monotonic()
    victim.stop()
    wait_for(lambda: any("backend=b2" in l and "to=DOWN" in l for l in s.log_lines("backend_state")),
             timeout=3, what="b2 DOWN")
    took = time.monotonic() - killed_at
    # interval × unhealthy_threshold, plus one interval of phase, plus slack
    # for process scheduling on a loaded CI machine.
    assert took <= interval * fall + interval + 0.3, took
    # No client request reaches the dead backend, none fails.
    for _ in range(30):
        status, _, body = http_get(port)
        assert status == 200 and body.strip() in (b"b1", b"b3")

    back = procs.origin("b2", port=victim.port)
    started = time.monotonic()
    wait_for(lambda: any("backend=b2" in l and "to=UP" in l for l in s.log_lines("backend_state")),
             timeout=3, what="b2 UP")
    assert time.monotonic() - started <= interval * rise + interval + 0.3
    seen = set()
    for _ in range(30):
        seen.add(http_get(port)[2].strip())
    assert b"b2" in seen
    assert back.alive()


def _stream(seed, total):
    """Deterministic pseudo-random bytes, in 1 MiB blocks."""
    block = hashlib.sha256(seed).digest() * (1 << 15)
    sent = 0
    i = 0
    while sent < total:
        b = bytes([i & 0xff]) + block[1:]
        n = min(len(b), total - sent)
        yield b[:n]
        sent += n
        i += 1


def test_200mb_both_ways_byte_identical_with_half_close(procs):
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)]), [port])
    total = 200 * 1000 * 1000
    sent_hash = hashlib.sha256()
    recv_hash = hashlib.sha256()
    received = [0]

    c = socket.create_connection(("127.0.0.1", port))

    def reader():
        while True:
            d = c.recv(1 << 20)
            if not d:
                return
            recv_hash.update(d)
            received[0] += len(d)

    t = threading.Thread(target=reader)
    t.start()
    for chunk in _stream(b"up", total):
        sent_hash.update(chunk)
        c.sendall(chunk)
    # Half-close: we stop sending, and must still get every echoed byte, then EOF.
    c.shutdown(socket.SHUT_WR)
    t.join(120)
    assert not t.is_alive(), "echo did not finish"
    c.close()
    assert received[0] == total
    assert recv_hash.hexdigest() == sent_hash.hexdigest()


def test_200mb_download_identical_to_direct(procs):
    o = procs.origin("b1")
    port = free_port()
    procs.sluice(tcp_config(port, [("b1", o.address)]), [port])

    def fetch(p):
        h = hashlib.sha256()
        n = 0
        with socket.create_connection(("127.0.0.1", p)) as s:
            s.sendall(b"GET /bytes/200000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                h.update(d)
                n += len(d)
        return n, h.hexdigest()

    direct = fetch(o.port)
    proxied = fetch(port)
    assert direct[0] > 200000000
    assert proxied == direct


def test_half_close_client_still_reads_reply(procs):
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)]), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"hello, half-closed world")
        c.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            data += d
    assert data == b"hello, half-closed world"


def test_backend_closes_first(procs):
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(tcp_config(port, [("b1", o.address)]), [port])
    # The origin closes after answering (Connection: close); the client sees
    # the whole answer and then EOF, and the session ends as backend_close.
    status, _, body = http_get(port)
    assert status == 200 and body == b"b1\n"
    s.stop()
    assert "end=backend_close" in s.stdout() or "end=client_close" in s.stdout()


def test_backend_reset_reaches_client(procs):
    """A backend that resets mid-stream: the client sees a reset or EOF
    promptly, sluice keeps serving."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    bport = lsock.getsockname()[1]
    port = free_port()
    # No port probe: it would reach the backend first. Listeners are bound
    # before sluice logs event=started.
    s = procs.sluice(tcp_config(port, [("rst", f"127.0.0.1:{bport}")]))

    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    b, _ = lsock.accept()
    c.sendall(b"x" * 100)
    assert b.recv(100)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    b.close()   # RST
    try:
        assert c.recv(100) == b""
    except ConnectionResetError:
        pass
    c.close()
    lsock.close()
    wait_for(lambda: "end=backend_reset" in s.stdout(), what="backend_reset logged")


def test_2000_concurrent_connections(procs):
    echo = procs.origin("e1", mode="tcp-echo")
    echo2 = procs.origin("e2", mode="tcp-echo")
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address), ("e2", echo2.address)],
                            balance="least_conn", workers=2), [port])
    n = 2000
    socks = []
    for i in range(n):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    for i, c in enumerate(socks):
        c.sendall(b"%08d" % i)
    for i, c in enumerate(socks):
        got = b""
        while len(got) < 8:
            d = c.recv(8 - len(got))
            assert d, f"connection {i} closed early"
            got += d
        assert got == b"%08d" % i
    for c in socks:
        c.close()


def test_idle_timeout_closes(procs):
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    s = procs.sluice(tcp_config(port, [("e1", echo.address)],
                                extra_listener="    timeouts: {client_idle: 300ms}"), [port])
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"ping")
    assert c.recv(10) == b"ping"
    t0 = time.monotonic()
    assert c.recv(10) == b""     # closed by sluice for idleness
    assert 0.2 <= time.monotonic() - t0 <= 2.0
    c.close()
    wait_for(lambda: "end=idle_timeout" in s.stdout(), what="idle_timeout logged")


def test_no_backend_closes_client(procs):
    port = free_port()
    dead = free_port()
    s = procs.sluice(tcp_config(port, [("dead", f"127.0.0.1:{dead}")]), [port])
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert c.recv(10) == b""
    except ConnectionResetError:
        pass
    c.close()
    wait_for(lambda: "end=connect_failed" in s.stdout(), what="connect_failed logged")


def test_max_connections_on_a_tcp_listener(procs):
    """At max_connections the next client's connection waits, unaccepted,
    and is served once the open one closes."""
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    procs.sluice(tcp_config(port, [("e1", echo.address)],
                            extra_listener="    max_connections: 1"), [port])
    a = socket.create_connection(("127.0.0.1", port), timeout=5)
    a.sendall(b"a")
    assert a.recv(10) == b"a"
    b = socket.create_connection(("127.0.0.1", port), timeout=5)
    b.sendall(b"b")
    b.settimeout(0.8)
    try:
        got = b.recv(10)
    except socket.timeout:
        got = None
    assert got is None, "the second connection was served past max_connections"
    a.close()
    b.settimeout(3)
    assert b.recv(10) == b"b"
    b.close()
