"""Draining a backend for a deploy: in-flight work finishes, no new work
reaches it, and what is left after drain_timeout is closed."""
import http.client
import json
import threading
import time

from harness import WebSocketEcho, free_port, wait_for


def config(port, admin_port, backends, drain_timeout="5s", mode="http"):
    lines = ["workers: 1", "log: {level: info, access: stdout}",
             f"admin: {{listen: 127.0.0.1:{admin_port}}}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", f"    mode: {mode}",
             "    pool: app", "pools:", "  - name: app", "    balance: round_robin",
             f"    drain_timeout: {drain_timeout}", "    backends:"]
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    return "\n".join(lines) + "\n"


def get(port, path, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def admin(admin_port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_drain_lets_inflight_finish_and_takes_no_new_work(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, [("b1", b1.address), ("b2", b2.address)]))
    result = {}

    def slow():
        result["r"] = get(port, "/delay/1200")     # round robin: b1 first

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    assert admin(aport, "POST", "/api/v1/pools/app/backends/b1/drain")[0] == 200
    status = json.loads(admin(aport, "GET", "/api/v1/status")[1])
    states = {b["name"]: b["state"] for p in status["pools"] for b in p["backends"]}
    assert states["b1"] == "DRAINING"
    before = json.loads(get(b1.port, "/stats")[1])["requests"]
    for _ in range(20):
        assert get(port, "/") == (200, b"b2\n")
    after = json.loads(get(b1.port, "/stats")[1])["requests"]
    assert after == before + 1          # only our own /stats call
    t.join(5)
    assert result["r"] == (200, b"b1\n")     # the in-flight request finished
    assert admin(aport, "POST", "/api/v1/pools/app/backends/b1/enable")[0] == 200
    assert {get(port, "/")[1] for _ in range(6)} == {b"b1\n", b"b2\n"}


def test_drain_timeout_closes_what_is_left(procs):
    b1 = procs.origin("b1")
    echo = procs.origin("e1", mode="tcp-echo")
    port, aport = free_port(), free_port()
    s = procs.sluice(config(port, aport, [("b1", b1.address), ("b2", b1.address)],
                            drain_timeout="500ms"))
    result = {}

    def slow():
        try:
            result["r"] = get(port, "/delay/4000")
        except (http.client.HTTPException, OSError) as e:
            result["e"] = e

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    admin(aport, "POST", "/api/v1/pools/app/backends/b1/drain")
    t.join(5)
    took = time.monotonic() - t0
    assert "e" in result, result          # cut, not answered
    assert 0.4 < took < 2.0, took
    wait_for(lambda: "end=drain_timeout" in s.stdout(), what="drain_timeout in the access log")

    # An L4 tunnel to a drained backend is cut the same way.
    tport, taport = free_port(), free_port()
    procs.sluice(config(tport, taport, [("e1", echo.address)], drain_timeout="300ms", mode="tcp"))
    import socket
    c = socket.create_connection(("127.0.0.1", tport), timeout=5)
    c.sendall(b"hi")
    assert c.recv(10) == b"hi"
    admin(taport, "POST", "/api/v1/pools/app/backends/e1/drain")
    c.sendall(b"still")
    assert c.recv(10) == b"still"        # in flight: still served
    time.sleep(0.8)
    try:
        assert c.recv(10) == b""
    except ConnectionResetError:
        pass
    c.close()


def test_drain_keeps_open_websocket_until_drain_timeout(procs):
    import asyncio
    import pytest
    websockets = pytest.importorskip("websockets")
    origin = WebSocketEcho(websockets)
    port, aport = free_port(), free_port()
    s = procs.sluice(config(port, aport, [("ws", f"127.0.0.1:{origin.port}")],
                            drain_timeout="1500ms"))

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            assert admin(aport, "POST", "/api/v1/pools/app/backends/ws/drain")[0] == 200
            t0 = time.monotonic()
            # Draining: the open tunnel goes on...
            await ws.send("during")
            assert await ws.recv() == "during"
            # ...no new request reaches the drained backend...
            assert get(port, "/")[0] == 503
            # ...and after drain_timeout the tunnel is closed.
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await ws.send("ping")
                    await asyncio.wait_for(ws.recv(), 5)
                    await asyncio.sleep(0.1)
            took = time.monotonic() - t0
            assert 1.2 < took < 3.0, took
    try:
        asyncio.run(asyncio.wait_for(client(), 20))
    finally:
        origin.stop()
    wait_for(lambda: "end=drain_timeout" in s.stdout(), what="drain_timeout logged")
