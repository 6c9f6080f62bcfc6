"""Edges of the GSLB responder (`mode: dns`) that test_gslb.py does not
reach: EDNS versions (RFC 6891 BADVERS), and DNS over TCP (RFC 7766) with
clients that half-close, that trickle a query, or that come in more numbers
than the process has descriptors."""
import os
import resource
import socket
import struct
import time

from harness import free_port, wait_for
from test_gslb import dig


def status(out):
    return out.split("status: ", 1)[1].split(",", 1)[0]


def config(port):
    return "\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: gslb",
        f"    bind: 127.0.0.1:{port}", "    mode: dns", "    records:",
        "      - name: www.example.com", "        ttl: 20s", "        regions:",
        "          - {name: only, pool: p, addresses: [192.0.2.10, 192.0.2.11]}",
        "pools:", "  - name: p", "    backends: [{name: b1, address: 127.0.0.1:1}]",
    ]) + "\n"


def query(qid, name="www.example.com", qtype=1):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", qtype, 1)


def framed(msg):
    return struct.pack(">H", len(msg)) + msg


def read_answers(sk, count):
    """count length-framed DNS messages from a TCP socket (fewer if it closes)."""
    data, out = b"", []
    while len(out) < count:
        chunk = sk.recv(4096)
        if not chunk:
            break
        data += chunk
        while len(data) >= 2 and len(data) >= 2 + struct.unpack(">H", data[:2])[0]:
            n = struct.unpack(">H", data[:2])[0]
            out.append(data[2:2 + n])
            data = data[2 + n:]
    return out


def start(procs):
    port = free_port()
    s = procs.sluice(config(port))
    wait_for(lambda: dig(port, "www.example.com", "A", "+short").split() != [], what="an answer")
    return port, s


def test_edns_version_other_than_0_gets_badvers(procs):
    # RFC 6891 6.1.3: a responder that does not implement the query's EDNS
    # version answers BADVERS (16: its upper bits in the OPT record), with
    # its own version, so the client can fall back; it must not answer as
    # if version 0 had been asked.
    port, _ = start(procs)
    out = dig(port, "www.example.com", "A", "+edns=1", "+noednsneg")
    assert status(out) == "BADVERS", out
    assert "ANSWER: 0" in out and "EDNS: version: 0" in out, out
    out = dig(port, "www.example.com", "A", "+edns=0")
    assert status(out) == "NOERROR" and "192.0.2.10" in out, out


def test_tcp_query_then_half_close_is_answered(procs):
    # A client may send its query and shut down its sending side at once
    # (printf ... | nc -N, or a proxy relaying the client's FIN). The query
    # and the FIN then often arrive in one read: the answer must still go
    # out before the connection closes. A burst makes that the usual case.
    port, s = start(procs)
    socks = []
    for i in range(100):
        sk = socket.create_connection(("127.0.0.1", port), timeout=10)
        sk.sendall(framed(query(i)))
        sk.shutdown(socket.SHUT_WR)
        socks.append(sk)
    missing = []
    for i, sk in enumerate(socks):
        with sk:
            answers = read_answers(sk, 1)
        if len(answers) != 1 or struct.unpack(">H", answers[0][:2])[0] != i:
            missing.append(i)
    assert not missing, f"{len(missing)} of 100 half-closed queries got no answer"
    assert s.alive()


def test_tcp_length_split_across_reads(procs):
    # The two-byte length and the message arrive a byte at a time, and a
    # second query's length is split between two writes.
    port, _ = start(procs)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
        sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in framed(query(1)):
            sk.sendall(bytes([b]))
            time.sleep(0.005)
        assert [a[:2] for a in read_answers(sk, 1)] == [b"\x00\x01"]
        two = framed(query(2)) + framed(query(3))
        sk.sendall(two[:len(two) // 2 + 1])
        time.sleep(0.1)
        sk.sendall(two[len(two) // 2 + 1:])
        assert [a[:2] for a in read_answers(sk, 2)] == [b"\x00\x02", b"\x00\x03"]


def test_tcp_trickled_query_is_closed_after_the_idle_timeout(procs):
    # A connection closes after 10 s without a query (gslb.h); bytes that
    # never make up a query must not keep it open (slowloris: one byte every
    # few seconds would hold a descriptor forever).
    port, _ = start(procs)
    msg = framed(query(1, "a" * 60 + ".example.com"))
    started = time.monotonic()
    closed_after = None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
        sk.settimeout(1.0)
        for b in msg[:-1]:                   # never the whole query
            try:
                sk.sendall(bytes([b]))
                if sk.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except socket.timeout:
                pass
            except OSError:
                closed_after = time.monotonic() - started
                break
            if time.monotonic() - started > 30:
                break
    assert closed_after is not None, "a connection that never completed a query stayed open 30 s"
    assert closed_after >= 8, closed_after
    # A connection with queries stays open while they keep coming.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
        sk.sendall(framed(query(5)))
        assert len(read_answers(sk, 1)) == 1


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_tcp_accept_out_of_descriptors_does_not_spin(procs):
    # More DNS-over-TCP clients than descriptors: accept4 fails with
    # EMFILE while connections wait in the backlog, and the listening
    # socket stays readable. The worker must pause accepting (as the other
    # listeners do), not call accept4 in a busy loop; and take them up
    # again once descriptors are free.
    port, s = start(procs)
    soft, hard = resource.prlimit(s.pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir(f"/proc/{s.pid}/fd"))
    resource.prlimit(s.pid, resource.RLIMIT_NOFILE, (used + 4, hard))
    clients = []
    try:
        for _ in range(20):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # The accepted ones fill the descriptors; the rest wait in the backlog.
        wait_for(lambda: len(os.listdir(f"/proc/{s.pid}/fd")) >= used + 4, timeout=10,
                 what="sluice out of descriptors")
        before = cpu_seconds(s.pid)
        time.sleep(4)
        spent = cpu_seconds(s.pid) - before
        assert spent < 0.8, f"sluice used {spent:.2f} s of CPU in 4 s while out of descriptors"
        # UDP still answers meanwhile.
        assert dig(port, "www.example.com", "A", "+short").split() == ["192.0.2.10", "192.0.2.11"]
    finally:
        for c in clients:
            c.close()
        resource.prlimit(s.pid, resource.RLIMIT_NOFILE, (soft, hard))
    # Descriptors free again: TCP queries are answered.
    def tcp_answers():
        try:
            return dig(port, "www.example.com", "A", "+tcp", "+short").split() == \
                ["192.0.2.10", "192.0.2.11"]
        except AssertionError:
            return False
    wait_for(tcp_answers, timeout=15, what="TCP answers again")
    assert s.alive()


def test_client_subnet_scope_narrowed_by_a_client_network_inside_it(procs):
    # A resolver asks for 10.1.2.0/24 (RFC 7871). The far region claims
    # 10.0.0.0/8, the near one only 10.1.2.128/25: the /24 as a whole gets
    # far, but its upper half would get near. The scope must say the answer
    # holds for the /25 the choice was made for, not the whole /24, or the
    # resolver gives far to the clients in 10.1.2.128/25 for the TTL (as the
    # GeoIP choice already does for a database network inside the subnet).
    port = free_port()
    procs.sluice("\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: gslb",
        f"    bind: 127.0.0.1:{port}", "    mode: dns", "    records:",
        "      - name: www.example.com", "        regions:",
        "          - {name: far, pool: p, addresses: [192.0.2.10], clients: [10.0.0.0/8]}",
        "          - {name: near, pool: p, addresses: [198.51.100.7], clients: [10.1.2.128/25]}",
        "pools:", "  - name: p", "    backends: [{name: b1, address: 127.0.0.1:1}]",
    ]) + "\n")
    wait_for(lambda: dig(port, "www.example.com", "A", "+short").split() != [], what="an answer")
    out = dig(port, "www.example.com", "A", "+subnet=10.1.2.0/24")
    assert "\tA\t192.0.2.10" in out, out
    assert "CLIENT-SUBNET: 10.1.2.0/24/25" in out, out
    out = dig(port, "www.example.com", "A", "+subnet=10.1.2.128/25")
    assert "\tA\t198.51.100.7" in out and "CLIENT-SUBNET: 10.1.2.128/25/25" in out, out
    # No client network inside the subnet: the answer holds for all of it.
    out = dig(port, "www.example.com", "A", "+subnet=10.9.0.0/16")
    assert "\tA\t192.0.2.10" in out and "CLIENT-SUBNET: 10.9.0.0/16/16" in out, out
    out = dig(port, "www.example.com", "A", "+subnet=10.1.2.200/32")
    assert "\tA\t198.51.100.7" in out and "CLIENT-SUBNET: 10.1.2.200/32/32" in out, out


def test_idle_tcp_clients_cannot_take_every_descriptor(procs):
    # Each DNS-over-TCP connection holds a descriptor for up to 10 s idle,
    # and there was no bound: enough idle clients used up the process's
    # descriptors, which every listener shares. A worker now keeps at most
    # 256 and closes the least recently active for each new one (RFC 7766
    # 6.2.3), so a new client is still answered.
    port, s = start(procs)
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        active = idle[-1]                      # one of them asks: it is kept
        active.sendall(framed(query(7)))
        assert len(read_answers(active, 1)) == 1
        wait_for(lambda: len(os.listdir(f"/proc/{s.pid}/fd")) < 300, timeout=10,
                 what="sluice to close connections past its bound")
        closed = 0
        for sk in idle[:40]:                   # the oldest: closed by sluice
            sk.settimeout(5)
            try:
                closed += sk.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed += 1
        assert closed == 40, closed
        with socket.create_connection(("127.0.0.1", port), timeout=10) as fresh:
            fresh.sendall(framed(query(8)))
            assert len(read_answers(fresh, 1)) == 1
        active.sendall(framed(query(9)))
        assert len(read_answers(active, 1)) == 1
    finally:
        for sk in idle:
            sk.close()
