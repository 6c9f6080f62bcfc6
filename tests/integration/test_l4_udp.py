"""L4 UDP: flows are balanced, replies come back, flows stick to a backend,
expire when idle, and move when their backend dies."""
import socket

from harness import free_port, wait_for


def udp_config(port, backends, balance="round_robin", idle="30s", max_flows=None, health=None):
    lines = ["workers: 1", "log: {level: debug, access: stdout}", "listeners:",
             "  - name: u", f"    bind: 127.0.0.1:{port}", "    mode: udp", "    pool: app",
             f"    timeouts: {{udp_idle: {idle}}}"]
    if max_flows:
        lines.append(f"    max_flows: {max_flows}")
    lines += ["pools:", "  - name: app", f"    balance: {balance}", "    backends:"]
    lines += [f"      - {{name: {n}, address: {a}}}" for n, a in backends]
    if health:
        lines.append(f"    health_check: {health}")
    return "\n".join(lines) + "\n"


def roundtrip(sock, port, payload, timeout=2.0):
    sock.settimeout(timeout)
    sock.sendto(payload, ("127.0.0.1", port))
    data, _ = sock.recvfrom(65536)
    return data


def test_udp_round_trips_through_three_backends(procs):
    os_ = [procs.origin(f"u{i}", mode="udp-echo", extra=("--udp-tag",)) for i in (1, 2, 3)]
    port = free_port()
    procs.sluice(udp_config(port, [(o.origin_name, o.address) for o in os_]))
    counts = {}
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(30)]
    for i, c in enumerate(clients):
        reply = roundtrip(c, port, b"hello %d" % i)
        name, _, echoed = reply.partition(b":")
        assert echoed == b"hello %d" % i
        counts[name] = counts.get(name, 0) + 1
        # Every datagram of a flow goes to the same backend.
        for k in range(5):
            r = roundtrip(c, port, b"again %d" % k)
            assert r == name + b":again %d" % k
    assert counts == {b"u1": 10, b"u2": 10, b"u3": 10}
    # A large datagram arrives whole.
    big = bytes(range(256)) * 200
    r = roundtrip(clients[0], port, big)
    assert r.partition(b":")[2] == big
    for c in clients:
        c.close()


def test_udp_flow_expires_and_is_logged(procs):
    o = procs.origin("u1", mode="udp-echo", extra=("--udp-tag",))
    port = free_port()
    s = procs.sluice(udp_config(port, [("u1", o.address)], idle="200ms"))
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert roundtrip(c, port, b"x") == b"u1:x"
    wait_for(lambda: "udp u 127.0.0.1" in s.stdout() and "end=idle_timeout" in s.stdout(),
             timeout=3, what="flow expiry in the access log")
    # A new flow starts after expiry.
    assert roundtrip(c, port, b"y") == b"u1:y"
    c.close()


def test_udp_flow_table_is_bounded(procs):
    o = procs.origin("u1", mode="udp-echo", extra=("--udp-tag",))
    port = free_port()
    s = procs.sluice(udp_config(port, [("u1", o.address)], max_flows=4))
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(10)]
    for c in clients:
        assert roundtrip(c, port, b"z") == b"u1:z"
    wait_for(lambda: s.stdout().count("end=flow_evicted") >= 6, what="6 evictions")
    for c in clients:
        c.close()


def test_udp_moves_off_dead_backend(procs):
    # The health check is TCP, and a UDP echo has no TCP port: run a TCP
    # listener beside each UDP echo on the same port number (free_port
    # gives numbers free for both).
    pa, pb = free_port(), free_port()
    a = procs.origin("u1", mode="udp-echo", extra=("--udp-tag",), port=pa)
    b = procs.origin("u2", mode="udp-echo", extra=("--udp-tag",), port=pb)
    ta = procs.origin("t1", mode="tcp-echo", port=pa)
    tb = procs.origin("t2", mode="tcp-echo", port=pb)
    port = free_port()
    s = procs.sluice(udp_config(port, [("u1", a.address), ("u2", b.address)],
                                health="{type: tcp, interval: 200ms, timeout: 100ms, "
                                       "healthy_threshold: 1, unhealthy_threshold: 1}"))
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first = roundtrip(c, port, b"1").partition(b":")[0]
    dead, dead_tcp = (a, ta) if first == b"u1" else (b, tb)
    dead.stop()
    dead_tcp.stop()
    wait_for(lambda: any("to=DOWN" in l for l in s.log_lines("backend_state")), timeout=3,
             what="backend DOWN")
    # The flow's next datagram opens a flow to the live backend.
    other = b"u2" if first == b"u1" else b"u1"
    assert roundtrip(c, port, b"2").partition(b":")[0] == other
    c.close()


def test_datagrams_during_reloads_never_crash_the_old_process(procs):
    """A reload makes the old process close its listeners from the worker's
    wake-up callback; a datagram event later in the same batch must not
    reach the closed listener (it did: the flow table was already freed).
    Datagrams flood the listener while it reloads ten times; every old
    process must then log its clean stop."""
    import threading
    o = procs.origin("u1", mode="udp-echo", extra=("--udp-tag",))
    port = free_port()
    cfg = udp_config(port, [("u1", o.address)]).replace("workers: 1", "workers: 2")
    s = procs.sluice(cfg.replace("level: debug", "level: info"))
    stop = threading.Event()

    def flood():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.setblocking(False)
            while not stop.is_set():
                for _ in range(50):
                    try:
                        u.sendto(b"x" * 32, ("127.0.0.1", port))
                    except BlockingIOError:
                        pass
                try:
                    while u.recv(2048):
                        pass
                except BlockingIOError:
                    pass

    threads = [threading.Thread(target=flood) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(10):
            s.reload()
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    wait_for(lambda: len(s.log_lines("stopped")) >= 10, timeout=30,
             what="every old process's clean stop")
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert roundtrip(c, port, b"after") == b"u1:after"
    c.close()
