"""Request mirroring of large bodies: a route's `mirror` copies a request's
body whole, of either framing, up to `mirror.max_body_size`, held in memory
while it is forwarded to the route's pool. A larger body, or one that would
take a worker past its bound on held bodies (64 MiB), is forwarded but not
copied (`skipped`); a mirror pool that never reads never holds the client.
The copies are checked at recording origins (test_mirror.Recorder, and an
HTTP/2 one written here) by the body's SHA-256."""
import hashlib
import http.client
import re
import threading
import time
import urllib.request

import h2.events

from harness import AcceptLoop, free_port, wait_for
from test_http2 import H2Client
from test_mirror import Recorder, config, mirror_counts, request
from test_upstream_h2_edges import H2Backend

MIB = 1024 * 1024


def body_of(n, seed=0):
    """n bytes that differ along their length, so that a misplaced or lost
    stretch changes the hash."""
    block = hashlib.sha256(b"%d" % seed).digest() * 2048 + bytes(range(251))
    out = block * (n // len(block) + 1)
    return out[:n]


def uneven_chunks(data):
    """data cut in chunks of uneven sizes, from 1 byte to 100 KB."""
    sizes = [1, 7, 4093, 65536, 100003, 3, 16384, 77777, 511, 32769]
    at, i = 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        yield data[at:at + n]
        at += n
        i += 1


def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_whole_bodies_of_both_framings_reach_the_mirror(procs):
    """1 MiB Content-Length and 1 MiB chunked (uneven chunks): the copy's
    body is the route's backend's, byte for byte."""
    app, shadow = Recorder(), Recorder()
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, f"127.0.0.1:{app.port}", f"127.0.0.1:{shadow.port}"),
                     wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        fixed, chunked = body_of(MIB, 1), body_of(MIB, 2)
        st, rid_fixed, _ = request(c, "POST", "/api/fixed", body=fixed)
        assert st == 200
        st, rid_chunked, _ = request(c, "PUT", "/api/chunked", body=uneven_chunks(chunked),
                                     headers={"Transfer-Encoding": "chunked"})
        assert st == 200
        c.close()
        wait_for(lambda: shadow.count() == 2, timeout=15, what="2 copies at the mirror")
        real = {r["headers"]["x-request-id"]: r for r in app.requests}
        copy = {r["headers"]["x-request-id"]: r for r in shadow.requests}
        for rid, body in ((rid_fixed, fixed), (rid_chunked, chunked)):
            assert real[rid]["len"] == copy[rid]["len"] == len(body)
            assert real[rid]["sha"] == copy[rid]["sha"] == sha(body)
        assert copy[rid_chunked]["headers"]["transfer-encoding"] == "chunked"
        assert copy[rid_fixed]["headers"]["content-length"] == str(MIB)
        wait_for(lambda: mirror_counts(admin) == {"ok": 2, "failed": 0, "skipped": 0},
                 what="2 ok in the metrics")
    finally:
        app.stop()
        shadow.stop()


def test_a_retried_request_is_copied_once_with_its_body(procs):
    """A try that failed (the first backend takes part of the body, then
    closes without answering) is sent again; the copy holds the body once,
    not the bytes of both tries."""
    app = procs.origin("a1")
    shadow = Recorder()

    def take_some_then_close(s):
        got = 0
        s.settimeout(10)
        try:
            while got < 64 * 1024:
                d = s.recv(65536)
                if not d:
                    break
                got += len(d)
        finally:
            s.close()

    dead = AcceptLoop(lambda s: threading.Thread(target=take_some_then_close, args=(s,),
                                                 daemon=True).start())
    port, admin = free_port(), free_port()
    try:
        cfg = config(port, admin, app.address, f"127.0.0.1:{shadow.port}")
        cfg = cfg.replace(
            f"    backends: [{{name: a1, address: {app.address}}}]\n",
            "    balance: round_robin\n"
            "    retries: {attempts: 1, retry_on: [reset], retry_buffer: 1m}\n"
            f"    backends: [{{name: d1, address: {dead.address}}}, "
            f"{{name: a1, address: {app.address}}}]\n", 1)
        procs.sluice(cfg, wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = body_of(300 * 1024, 3)
        for _ in range(2):        # one of the two goes to d1 first
            st, _, answer = request(c, "PUT", "/api/retried", body=body)
            assert st == 200 and answer == b"a1\n"
        c.close()
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read()
        assert re.search(rb'^sluice_retries_total\{pool="app"\} [1-9]', text, re.M), text
        wait_for(lambda: shadow.count() == 2, timeout=15, what="2 copies")
        assert [(r["len"], r["sha"]) for r in shadow.requests] == [(len(body), sha(body))] * 2
    finally:
        dead.stop()
        shadow.stop()


def test_a_body_above_max_body_size_is_skipped(procs):
    app = procs.origin("a1")
    shadow = Recorder()
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, f"127.0.0.1:{shadow.port}",
                            mirror="{pool: shadow, max_body_size: 256k}"),
                     wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        big = body_of(300 * 1024, 4)
        st, _, answer = request(c, "POST", "/api/big", body=big)
        assert st == 200 and answer == b"a1\n"
        st, _, answer = request(c, "POST", "/api/big-chunked", body=uneven_chunks(big),
                                headers={"Transfer-Encoding": "chunked"})
        assert st == 200 and answer == b"a1\n"
        small = body_of(200 * 1024, 5)
        st, _, answer = request(c, "POST", "/api/small", body=uneven_chunks(small),
                                headers={"Transfer-Encoding": "chunked"})
        assert st == 200 and answer == b"a1\n"
        c.close()
        wait_for(lambda: mirror_counts(admin) == {"ok": 1, "failed": 0, "skipped": 2},
                 timeout=15, what="the small body copied, both big ones skipped")
        assert [(r["target"], r["sha"]) for r in shadow.requests] == [("/small", sha(small))]
    finally:
        shadow.stop()


def test_a_mirror_that_never_reads_does_not_hold_the_client(procs):
    """The copies stay in flight (their pool's upstream_response is a
    minute) while the client sends and gets every answer."""
    app = procs.origin("a1")
    silent = AcceptLoop(lambda s: None)       # accepts, never reads
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, silent.address,
                            mirror="{pool: shadow, max_body_size: 8m}",
                            shadow_timeouts="{connect: 1s, upstream_response: 60s}"),
                     wait_ports=[port, admin])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        body = body_of(6 * MIB, 6)
        for i in range(3):
            st, _, answer = request(c, "POST", f"/api/fixed/{i}", body=body)
            assert st == 200 and answer == b"a1\n"
            st, _, answer = request(c, "PUT", f"/api/chunked/{i}", body=uneven_chunks(body),
                                    headers={"Transfer-Encoding": "chunked"})
            assert st == 200 and answer == b"a1\n"
        c.close()
        # Every copy is still waiting on the silent pool: none skipped,
        # none ended.
        assert mirror_counts(admin) == {"ok": 0, "failed": 0, "skipped": 0}
    finally:
        silent.stop()


def test_bodies_held_for_copies_are_bounded_per_worker(procs):
    """Eight 12 MiB uploads at once against a mirror that never reads: the
    worker holds at most 64 MiB of bodies for copies, so at least three
    copies are skipped while every client gets its answer; once the held
    copies time out, their memory is given back and copies are made again."""
    app = procs.origin("a1")
    silent = AcceptLoop(lambda s: None)
    port, admin = free_port(), free_port()
    try:
        procs.sluice(config(port, admin, app.address, silent.address,
                            mirror="{pool: shadow, max_body_size: 16m}",
                            shadow_timeouts="{connect: 1s, upstream_response: 4s}"),
                     wait_ports=[port, admin])
        body = body_of(12 * MIB, 7)
        results = []

        def upload(i):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                results.append(request(c, "POST", f"/api/up/{i}", body=body)[::2])
            finally:
                c.close()

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert results == [(200, b"a1\n")] * 8
        wait_for(lambda: sum(mirror_counts(admin).values()) == 8, timeout=30,
                 what="8 copies ended or skipped")
        counts = mirror_counts(admin)
        # At most five 12 MiB copies fit in 64 MiB: those were made (and
        # timed out at the silent pool), the others skipped.
        assert counts["skipped"] >= 3 and 1 <= counts["failed"] <= 5 and counts["ok"] == 0, counts
        # The held copies timed out and gave their bodies back: a new one fits.
        upload(8)
        wait_for(lambda: sum(mirror_counts(admin).values()) == 9, timeout=30, what="9th copy")
        assert mirror_counts(admin)["skipped"] == counts["skipped"]
    finally:
        silent.stop()


class H2Recorder:
    """An HTTP/2 origin (prior knowledge) that records each request's
    path and body hash, and answers 200."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.backend = H2Backend(self.serve, limit=60.0)
        self.address = self.backend.address

    def serve(self, conn, sock, events):
        bodies, paths = {}, {}
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                bodies[ev.stream_id] = b""
                paths[ev.stream_id] = dict(ev.headers)[":path"]
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                body = bodies.pop(ev.stream_id)
                with self.lock:
                    self.requests.append({"target": paths.pop(ev.stream_id),
                                          "len": len(body), "sha": sha(body)})
                conn.send_headers(ev.stream_id, [(":status", "200"), ("content-length", "2")])
                conn.send_data(ev.stream_id, b"ok", end_stream=True)

    def count(self):
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.backend.stop()


def test_http2_clients_and_an_http2_mirror_pool_get_whole_bodies(procs):
    """An HTTP/2 client's 1 MiB bodies, with a content-length and without
    (chunked towards the pools), copied to a mirror pool with http2."""
    app = procs.origin("a1")
    shadow = H2Recorder()
    port, admin = free_port(), free_port()
    try:
        cfg = config(port, admin, app.address, shadow.address,
                     shadow_timeouts="{connect: 1s, upstream_response: 10s}\n    http2: true",
                     listener_extra="    http2: true\n")
        procs.sluice(cfg, wait_ports=[port, admin])
        client = H2Client(port)
        with_len, without = body_of(MIB, 8), body_of(MIB, 9)
        sid1 = client.request("/api/len", method="POST", body=with_len,
                              headers=[("content-length", str(len(with_len)))])
        sid2 = client.request("/api/nolen", method="POST", body=without)
        for r in client.wait([sid1, sid2], timeout=30):
            assert r["headers"][":status"] == "200" and r["body"] == b"a1\n"
        client.sock.close()
        wait_for(lambda: shadow.count() == 2, timeout=15, what="2 copies over HTTP/2")
        got = {r["target"]: (r["len"], r["sha"]) for r in shadow.requests}
        assert got == {"/len": (MIB, sha(with_len)), "/nolen": (MIB, sha(without))}
        wait_for(lambda: mirror_counts(admin) == {"ok": 2, "failed": 0, "skipped": 0},
                 what="2 ok")
    finally:
        shadow.stop()


def test_mirror_max_body_size_config_errors(tmp_path):
    import subprocess
    from harness import SLUICE
    base = config(1, 2, "127.0.0.1:3", "127.0.0.1:4")
    cases = [
        ("{pool: shadow, max_body_size: 33m}", "mirror.max_body_size: use a size up to 32m"),
        ("{pool: shadow, max_body_size: 12 parsecs}", "mirror.max_body_size: bad size"),
        ("{pool: shadow, max_body_size: [1m]}", "mirror.max_body_size"),
    ]
    for i, (mirror, want) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(base.replace("mirror: {pool: shadow}", f"mirror: {mirror}"))
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        out = r.stdout + r.stderr
        assert r.returncode == 1, (want, out)
        # The position of the value: line of the mirror mapping, its column.
        m = re.search(rf"{re.escape(str(path))}:(\d+):(\d+): .*{re.escape(want)}", out)
        assert m, (want, out)
        line = path.read_text().splitlines()[int(m.group(1)) - 1]
        assert line[int(m.group(2)) - 1:].startswith(mirror.split("max_body_size: ")[1][:2]), \
            (line, m.group(2))
    ok = tmp_path / "ok.yaml"
    ok.write_text(base.replace("mirror: {pool: shadow}", "mirror: {pool: shadow, max_body_size: 32m}"))
    r = subprocess.run([SLUICE, "check", "-c", str(ok)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
