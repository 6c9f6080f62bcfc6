"""Operating sluice: the admin API (status, drain/enable/disable/weight,
reload, errors, the token), /metrics checked by a strict text-format parser
and against real traffic, /healthz during a graceful stop, the dashboard,
and `sluice ctl`."""
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import SLUICE, free_port, http_get, port_open, tcp_config, wait_for


# ---- helpers ----

def admin_config(port, admin_port, pools, workers=2, token_file=None, health=None,
                 admin_listen=None, drain_timeout="5s"):
    """One http listener 'web' → pool 'app' (round robin) plus an admin block.
    pools: {name: [(backend_name, address), ...]}"""
    admin = f"admin: {{listen: {admin_listen or f'127.0.0.1:{admin_port}'}"
    if token_file:
        admin += f", token_file: {token_file}"
    admin += "}"
    lines = [f"workers: {workers}", f"drain_timeout: {drain_timeout}", admin,
             "log: {level: info, access: off}",
             "listeners:", "  - name: web", f"    bind: 127.0.0.1:{port}", "    mode: http",
             "    pool: app", "pools:"]
    for name, backends in pools.items():
        lines += [f"  - name: {name}", "    balance: round_robin",
                  "    timeouts: {connect: 1s, upstream_response: 10s}", "    backends:"]
        lines += [f"      - {{name: {b}, address: {a}}}" for b, a in backends]
        if health:
            lines.append(f"    health_check: {health}")
    return "\n".join(lines) + "\n"


def api(admin_port, method, path, body=None, token=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def api_json(admin_port, method, path, body=None, token=None):
    status, headers, data = api(admin_port, method, path, body, token)
    assert headers["content-type"].startswith("application/json"), headers
    return status, json.loads(data)


def status(admin_port):
    s, j = api_json(admin_port, "GET", "/api/v1/status")
    assert s == 200
    return j


def backend(st, pool, name):
    for p in st["pools"]:
        if p["name"] == pool:
            for b in p["backends"]:
                if b["name"] == name:
                    return b
    raise KeyError(f"{pool}/{name}")


def origin_requests(o):
    """Requests the origin has answered, this /stats call included: the
    difference of two calls is 1 + the requests proxied in between."""
    _, _, body = http_get(o.port, "/stats")
    return json.loads(body)["requests"]


def ctl(*args, timeout=10):
    return subprocess.run([SLUICE, "ctl", *args], capture_output=True, text=True,
                          timeout=timeout)


def settle(admin_port):
    """The harness probed each listener with one connection when sluice
    started; wait until sluice has accepted and closed it, so counters read
    afterwards move only with the test's own traffic."""
    wait_for(lambda: all(l["total_connections"] == 1 and l["active_connections"] == 0
                         for l in status(admin_port)["listeners"]),
             what="the start-up probe connection to be counted")


def start(procs, origins, workers=2, **kw):
    port, admin_port = free_port(), free_port()
    s = procs.sluice(admin_config(port, admin_port,
                                  {"app": [(o.origin_name, o.address) for o in origins]},
                                  workers=workers, **kw),
                     wait_ports=(port, admin_port))
    settle(admin_port)
    return s, port, admin_port


def token_file(text="s3cret\n"):
    fd, path = tempfile.mkstemp(prefix="sluice-token-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


# ---- a strict Prometheus text format (0.0.4) parser ----

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    assert re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text), f"bad value {text!r}"
    return float(text)


def parse_labels(s, i, line):
    """s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(s, i)
        assert m, f"bad label name in {line!r}"
        name = m.group(0)
        i = m.end()
        assert s[i:i + 2] == '="', f"expected =\" in {line!r}"
        i += 2
        val = []
        while s[i] != '"':
            if s[i] == "\\":
                esc = s[i + 1]
                assert esc in '\\"n', f"bad escape \\{esc} in {line!r}"
                val.append("\n" if esc == "n" else esc)
                i += 2
            else:
                assert s[i] != "\n"
                val.append(s[i])
                i += 1
        i += 1
        assert name not in labels, f"label {name} twice in {line!r}"
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        else:
            assert s[i] == "}", f"expected , or }} in {line!r}"


def parse_prometheus(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}.
    Fails on anything the format does not allow or that a scraper would
    reject: a TYPE after samples, a family split in two, a duplicate series,
    a histogram whose buckets are not cumulative or whose +Inf != _count."""
    assert text.endswith("\n"), "exposition must end with a newline"
    families, seen_series, order = {}, set(), []
    current = None

    def family_of(name):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and base in families and families[base]["type"] == "histogram":
                return base
        return name

    for line in text[:-1].split("\n"):
        assert line == line.strip() and line, f"blank or padded line {line!r}"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert METRIC_NAME.fullmatch(name), line
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if parts[1] == "TYPE":
                    assert fam["type"] is None, f"second TYPE for {name}"
                    assert not fam["samples"], f"TYPE after samples for {name}"
                    assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                    fam["type"] = parts[3]
                else:
                    assert fam["help"] is None, f"second HELP for {name}"
                    fam["help"] = parts[3] if len(parts) > 3 else ""
                if name != current:
                    assert name not in order, f"family {name} split"
                    order.append(name)
                    current = name
            continue
        m = METRIC_NAME.match(line)
        assert m, f"bad sample line {line!r}"
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i, line)
        assert line[i] == " ", f"expected a space in {line!r}"
        rest = line[i + 1:].split(" ")
        assert 1 <= len(rest) <= 2, line
        value = parse_value(rest[0])
        if len(rest) == 2:
            assert re.fullmatch(r"-?\d+", rest[1]), line
        fam_name = family_of(name)
        fam = families.setdefault(fam_name, {"type": None, "help": None, "samples": []})
        if fam_name != current:
            assert fam_name not in order, f"samples of {fam_name} are not together"
            order.append(fam_name)
            current = fam_name
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen_series, f"duplicate series {line!r}"
        seen_series.add(key)
        if fam["type"] == "counter":
            assert name.endswith("_total") and value >= 0, line
        fam["samples"].append((name, labels, value))

    for name, fam in families.items():
        assert fam["type"] and fam["help"] is not None, f"{name} lacks TYPE or HELP"
        if fam["type"] != "histogram":
            continue
        groups = {}
        for sname, labels, value in fam["samples"]:
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if sname == name + "_bucket":
                g["buckets"].append((parse_value(labels["le"]), value))
            elif sname == name + "_sum":
                g["sum"] = value
            elif sname == name + "_count":
                g["count"] = value
            else:
                raise AssertionError(f"stray sample {sname} in histogram {name}")
        for rest, g in groups.items():
            les = [le for le, _ in g["buckets"]]
            assert les == sorted(les) and len(set(les)) == len(les), f"{name}{rest}: le order"
            assert les and les[-1] == math.inf, f"{name}{rest}: no +Inf bucket"
            counts = [c for _, c in g["buckets"]]
            assert all(a <= b for a, b in zip(counts, counts[1:])), f"{name}{rest}: not cumulative"
            assert g["count"] is not None and g["sum"] is not None, f"{name}{rest}: no _sum/_count"
            assert counts[-1] == g["count"], f"{name}{rest}: +Inf {counts[-1]} != _count {g['count']}"
    return families


def scrape(admin_port):
    s, h, body = api(admin_port, "GET", "/metrics")
    assert s == 200
    assert h["content-type"].startswith("text/plain; version=0.0.4"), h
    return parse_prometheus(body.decode())


def samples(fams, name, **want):
    fam_name = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in fams:
            fam_name = name[: -len(suffix)]
    return [(l, v) for n, l, v in fams.get(fam_name, {"samples": []})["samples"]
            if n == name and all(l.get(k) == v2 for k, v2 in want.items())]


# ---- status ----

def test_status_fields(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    _, port, admin_port = start(procs, [b1, b2], workers=1)
    for _ in range(4):
        assert http_get(port)[0] == 200
    # The last connection's close may reach the worker a moment after the
    # answer reached the client.
    wait_for(lambda: status(admin_port)["listeners"][0]["active_connections"] == 0,
             what="the last client connection counted closed")
    st = status(admin_port)
    assert st["stopping"] is False
    (l,) = st["listeners"]
    assert l["name"] == "web" and l["address"] == f"127.0.0.1:{port}" and l["mode"] == "http"
    assert l["total_connections"] == 1 + 4 and l["active_connections"] == 0
    (p,) = st["pools"]
    assert p["name"] == "app" and p["algorithm"] == "round_robin"
    assert p["states"] == {"UP": 2, "SLOW_START": 0, "DRAINING": 0, "DOWN": 0, "DISABLED": 0}
    for b, o in zip(p["backends"], (b1, b2)):
        assert set(b) == {"name", "address", "state", "weight", "active_connections",
                          "active_requests", "requests_total", "failures_total"}
        assert b["name"] == o.origin_name and b["address"] == o.address
        assert b["state"] == "UP" and b["weight"] == 1
        assert b["requests_total"] == 2 and b["failures_total"] == 0
        assert b["active_requests"] == 0 and b["active_connections"] == 0


# ---- changes ----

def test_drain_seen_in_status_and_traffic(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    s, port, admin_port = start(procs, [b1, b2])
    for _ in range(4):                      # warm keep-alive connections to both
        http_get(port)
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b1/drain")
    assert code == 200, j
    assert j["state"] == "DRAINING" and j["previous_state"] == "UP" and j["changed"] is True
    assert backend(status(admin_port), "app", "b1")["state"] == "DRAINING"
    assert status(admin_port)["pools"][0]["states"]["DRAINING"] == 1
    before1, before2 = origin_requests(b1), origin_requests(b2)
    for _ in range(30):
        st, _, body = http_get(port)
        assert st == 200 and body == b"b2\n"
    assert origin_requests(b1) - before1 - 1 == 0, "a drained backend got requests"
    assert origin_requests(b2) - before2 - 1 == 30
    lines = s.log_lines("admin_change")
    assert any("action=drain pool=app backend=b1 from=UP to=DRAINING" in l and "peer=127.0.0.1:" in l
               for l in lines), lines
    # Draining again is a no-op, not an error.
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b1/drain")
    assert code == 200 and j["changed"] is False
    # enable puts it back in rotation.
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b1/enable")
    assert code == 200 and j["state"] == "UP"
    names = {http_get(port)[2] for _ in range(10)}
    assert names == {b"b1\n", b"b2\n"}


def test_disable_enable_and_conflict(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    _, port, admin_port = start(procs, [b1, b2])
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b2/disable")
    assert code == 200 and j["state"] == "DISABLED"
    assert {http_get(port)[2] for _ in range(6)} == {b"b1\n"}
    # Draining a disabled backend conflicts with the operator's disable.
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b2/drain")
    assert code == 409 and "DISABLED" in j["error"]
    assert backend(status(admin_port), "app", "b2")["state"] == "DISABLED"
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b2/enable")
    assert code == 200 and j["state"] == "UP" and j["previous_state"] == "DISABLED"
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b2/enable")
    assert code == 200 and j["changed"] is False


def test_weight(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    _, port, admin_port = start(procs, [b1, b2], workers=1)
    code, j = api_json(admin_port, "PUT", "/api/v1/pools/app/backends/b1/weight", '{"weight": 3}')
    assert code == 200 and j["weight"] == 3 and j["previous_weight"] == 1, j
    assert backend(status(admin_port), "app", "b1")["weight"] == 3
    before1, before2 = origin_requests(b1), origin_requests(b2)
    for _ in range(40):
        assert http_get(port)[0] == 200
    # Smooth weighted round robin is exact over whole cycles of 4.
    assert (origin_requests(b1) - before1 - 1, origin_requests(b2) - before2 - 1) == (30, 10)
    for good in ("256", " 7 ", "0"):
        code, j = api_json(admin_port, "PUT", "/api/v1/pools/app/backends/b2/weight",
                           f'{{"weight":{good}}}')
        assert code == 200 and j["weight"] == int(good), j
    # weight 0 takes no new work
    assert {http_get(port)[2] for _ in range(4)} == {b"b1\n"}


def test_bad_requests_change_nothing(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    _, _, admin_port = start(procs, [b1, b2])
    before = status(admin_port)["pools"]
    cases = [
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '{"weight": 257}', 400, "0 to 256"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '{"weight": -1}', 400, "0 to 256"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '{"weight": 1.5}', 400, "whole number"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '{"weight": "2"}', 400, "whole number"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '{"weight": 2, "x": 1}', 400, "nothing else"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '{"weight": 2', 400, "not valid JSON"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", 'weight=2', 400, "not valid JSON"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '', 400, "missing body"),
        ("PUT", "/api/v1/pools/app/backends/b1/weight", '[2]', 400, "nothing else"),
        ("POST", "/api/v1/pools/nope/backends/b1/drain", None, 404, "no pool named 'nope'"),
        ("POST", "/api/v1/pools/app/backends/nope/drain", None, 404, "no backend named 'nope'"),
        ("PUT", "/api/v1/pools/nope/backends/b1/weight", '{"weight": 2}', 404, "no pool"),
        ("POST", "/api/v1/pools/app/backends/b1/explode", None, 404, "no such endpoint"),
        ("GET", "/api/v2/status", None, 404, "no such endpoint"),
        ("GET", "/api/v1/pools/app/backends/b1/drain", None, 405, "use POST"),
        ("POST", "/api/v1/pools/app/backends/b1/weight", '{"weight": 2}', 405, "use PUT"),
        ("DELETE", "/api/v1/pools/app/backends/b1/disable", None, 405, "use POST"),
        ("POST", "/api/v1/status", None, 405, "use GET"),
        ("PUT", "/metrics", None, 405, "use GET"),
        ("GET", "/api/v1/reload", None, 405, "use POST"),
        ("POST", "/api/v1/pools/app/backends/b%zz/drain", None, 400, "bad path"),
    ]
    for method, path, body, want, words in cases:
        code, h, data = api(admin_port, method, path, body)
        assert code == want, (method, path, body, code, data)
        assert h["content-type"] == "application/json", h
        j = json.loads(data)
        assert list(j) == ["error"] and words in j["error"], (path, j)
        if want == 405:
            assert h["allow"] in ("GET, HEAD", "POST", "PUT"), h
    # Malformed HTTP gets a JSON 400 too, and the connection closes.
    with socket.create_connection(("127.0.0.1", admin_port), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
    assert "error" in json.loads(body)
    assert status(admin_port)["pools"] == before


def test_enable_respects_failing_health_check(procs):
    b1 = procs.origin("b1")
    dead = f"127.0.0.1:{free_port()}"      # nothing listens here
    port, admin_port = free_port(), free_port()
    procs.sluice(admin_config(port, admin_port, {"app": [("b1", b1.address), ("dead", dead)]},
                              health="{type: tcp, interval: 200ms, timeout: 100ms, "
                                     "healthy_threshold: 1, unhealthy_threshold: 1}"),
                 wait_ports=(port, admin_port))
    wait_for(lambda: backend(status(admin_port), "app", "dead")["state"] == "DOWN",
             what="dead backend DOWN")
    for name in ("dead", "b1"):
        code, j = api_json(admin_port, "POST", f"/api/v1/pools/app/backends/{name}/disable")
        assert code == 200 and j["state"] == "DISABLED"
    time.sleep(0.5)                          # health checks go on; the operator state stays
    assert backend(status(admin_port), "app", "dead")["state"] == "DISABLED"
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/dead/enable")
    assert code == 200 and j["state"] == "DOWN", j
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b1/enable")
    assert code == 200 and j["state"] == "UP", j


def test_tcp_pool_drain(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    port, admin_port = free_port(), free_port()
    procs.sluice(tcp_config(port, [("b1", b1.address), ("b2", b2.address)], workers=2,
                            top=f"admin: {{listen: 127.0.0.1:{admin_port}}}"),
                 wait_ports=(port, admin_port))
    settle(admin_port)
    code, j = api_json(admin_port, "POST", "/api/v1/pools/app/backends/b2/drain")
    assert code == 200 and j["state"] == "DRAINING"
    base = status(admin_port)
    assert {http_get(port)[2] for _ in range(10)} == {b"b1\n"}
    st = status(admin_port)
    assert st["listeners"][0]["mode"] == "tcp"
    assert st["listeners"][0]["total_connections"] == base["listeners"][0]["total_connections"] + 10
    assert backend(st, "app", "b1")["requests_total"] == backend(base, "app", "b1")["requests_total"] + 10
    assert backend(st, "app", "b2")["requests_total"] == backend(base, "app", "b2")["requests_total"]


# ---- the token ----

def test_token_required_for_changes(procs):
    b1 = procs.origin("b1")
    tf = token_file("s3cret\n")
    try:
        _, _, admin_port = start(procs, [b1], token_file=tf)
        path = "/api/v1/pools/app/backends/b1/drain"
        for token in (None, "wrong", "s3cret2", ""):
            code, h, data = api(admin_port, "POST", path, token=token)
            assert code == 401, (token, data)
            assert h["www-authenticate"].startswith("Bearer")
            assert "error" in json.loads(data)
        code, h, data = api(admin_port, "POST", path, headers={"Authorization": "Basic czNjcmV0"})
        assert code == 401
        assert backend(status(admin_port), "app", "b1")["state"] == "UP"   # reads are open
        assert api(admin_port, "GET", "/metrics")[0] == 200
        code, j = api_json(admin_port, "POST", path, token="s3cret")     # newline stripped
        assert code == 200 and j["state"] == "DRAINING"
        code, j = api_json(admin_port, "POST", "/api/v1/reload")
        assert code == 401 and "error" in j                             # a change: token needed
        # ctl: without the token it says what to do; with it, it works.
        r = ctl("--admin", f"127.0.0.1:{admin_port}", "enable", "app/b1")
        assert r.returncode == 1 and "HTTP 401" in r.stderr and "--token-file" in r.stderr
        r = ctl("--admin", f"127.0.0.1:{admin_port}", "--token-file", tf, "enable", "app/b1")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "app/b1: DRAINING -> UP"
    finally:
        os.unlink(tf)


def run_check(text):
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    r = subprocess.run([SLUICE, "check", "-c", path], capture_output=True, text=True, timeout=10)
    r2 = subprocess.run([SLUICE, "-c", path], capture_output=True, text=True, timeout=10)
    os.unlink(path)
    return r, r2, path


def test_non_loopback_needs_token_file():
    text = admin_config(free_port(), 0, {"app": [("b1", "127.0.0.1:9")]},
                        admin_listen="0.0.0.0:19901")
    check, run, path = run_check(text)
    for r in (check, run):
        assert r.returncode == 1
        assert f"{path}:3:17: error: admin.listen: 0.0.0.0:19901 is not a loopback address" in r.stderr
    text = admin_config(free_port(), 9901, {"app": [("b1", "127.0.0.1:9")]},
                        token_file="/nonexistent/token")
    check, run, path = run_check(text)
    for r in (check, run):
        assert r.returncode == 1
        assert f"{path}:3:45: error: admin.token_file: cannot read '/nonexistent/token'" in r.stderr


def test_admin_port_in_use_is_reported_at_its_position():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    admin_port = s.getsockname()[1]
    try:
        _, run, path = run_check(admin_config(free_port(), admin_port,
                                              {"app": [("b1", "127.0.0.1:9")]}))
    finally:
        s.close()
    assert run.returncode == 1
    assert f"{path}:3:17: error: admin.listen: cannot bind 127.0.0.1:{admin_port}" in run.stderr


# ---- metrics ----

def test_metrics_format_and_exact_counts(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    _, port, admin_port = start(procs, [b1, b2], workers=2)
    fams = scrape(admin_port)

    for fam in ("sluice_requests_total", "sluice_request_duration_seconds",
                "sluice_connections_active", "sluice_connections_total", "sluice_backend_up",
                "sluice_backend_active_requests", "sluice_health_checks_total",
                "sluice_retries_total", "sluice_bytes_total", "sluice_backend_state"):
        assert fam in fams, fam
    assert fams["sluice_request_duration_seconds"]["type"] == "histogram"

    # Exactly 1,000 requests, over 4 keep-alive connections spread on the workers.
    def client(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(n):
            c.request("GET", "/")
            r = c.getresponse()
            assert r.status == 200
            r.read()
        c.close()
    threads = [threading.Thread(target=client, args=(250,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def total():
        f = scrape(admin_port)
        return f, sum(v for _, v in samples(f, "sluice_requests_total", listener="web",
                                            pool="app", code="200"))
    fams, n = wait_for(lambda: (lambda r: r if r[1] >= 1000 else None)(total()),
                       what="1000 requests counted")
    assert n == 1000
    per_backend = {l["backend"]: v for l, v in samples(fams, "sluice_requests_total",
                                                       listener="web", code="200")}
    assert per_backend == {"b1": 500, "b2": 500}
    assert [l["code"] for l, _ in samples(fams, "sluice_requests_total")] == ["200", "200"]
    (_, count), = samples(fams, "sluice_request_duration_seconds_count", pool="app")
    assert count == 1000
    (_, inf), = samples(fams, "sluice_request_duration_seconds_bucket", pool="app", le="+Inf")
    assert inf == 1000
    (_, conns), = samples(fams, "sluice_connections_total", listener="web")
    assert conns == 1 + 4
    (_, out), = samples(fams, "sluice_bytes_total", listener="web", direction="out")
    assert out >= 1000 * len("b1\n")
    assert {l["backend"]: v for l, v in samples(fams, "sluice_backend_up")} == {"b1": 1, "b2": 1}
    states = {(l["backend"], l["state"]): v for l, v in samples(fams, "sluice_backend_state")}
    assert states[("b1", "UP")] == 1 and states[("b1", "DRAINING")] == 0
    assert samples(fams, "sluice_retries_total", pool="app") == [({"pool": "app"}, 0)]

    # A drain shows in the gauges.
    api(admin_port, "POST", "/api/v1/pools/app/backends/b2/drain")
    fams = scrape(admin_port)
    assert {l["backend"]: v for l, v in samples(fams, "sluice_backend_up")} == {"b1": 1, "b2": 0}
    states = {(l["backend"], l["state"]): v for l, v in samples(fams, "sluice_backend_state")}
    assert states[("b2", "DRAINING")] == 1 and states[("b2", "UP")] == 0


def test_metrics_codes_retries_and_local_answers(procs):
    b1 = procs.origin("b1")
    dead = f"127.0.0.1:{free_port()}"
    port, admin_port = free_port(), free_port()
    procs.sluice(admin_config(port, admin_port, {"app": [("b1", b1.address), ("dead", dead)]},
                              workers=1), wait_ports=(port, admin_port))
    for path in ("/", "/", "/status/503", "/status/404"):
        http_get(port, path)
    fams = scrape(admin_port)
    got = {(l["backend"], l["code"]): v for l, v in samples(fams, "sluice_requests_total")}
    assert got[("b1", "200")] == 2 and got[("b1", "503")] == 1 and got[("b1", "404")] == 1
    # Every refused connect to the dead backend was retried on b1.
    (_, retries), = samples(fams, "sluice_retries_total", pool="app")
    (_, fails), = samples(fams, "sluice_backend_failures_total", backend="dead")
    assert retries == fails >= 1


def test_metrics_scrape_1000_backends_is_fast(procs):
    port, admin_port = free_port(), free_port()
    backends = [(f"b{i}", f"127.0.{i // 250}.{i % 250 + 1}:9") for i in range(1000)]
    s = procs.sluice(admin_config(port, admin_port, {"app": backends}),
                     wait_ports=(admin_port,))
    best = math.inf
    for _ in range(5):
        c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
        t0 = time.monotonic()
        c.request("GET", "/metrics")
        body = c.getresponse().read()
        best = min(best, time.monotonic() - t0)
        c.close()
    fams = parse_prometheus(body.decode())
    assert len(samples(fams, "sluice_backend_up")) == 1000
    assert best < 0.1, f"scrape took {best * 1000:.1f} ms"
    assert s.alive()


# ---- healthz, the dashboard, keep-alive ----

def test_healthz_503_during_graceful_stop(procs):
    b1 = procs.origin("b1")
    s, port, admin_port = start(procs, [b1], drain_timeout="10s")
    code, h, body = api(admin_port, "GET", "/healthz")
    assert (code, body) == (200, b"ok\n")
    result = {}

    def slow():
        result["r"] = http_get(port, "/delay/2500", timeout=10)
    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: status(admin_port)["listeners"][0]["active_connections"] == 1,
             what="slow request in flight")
    s.send_signal(signal.SIGTERM)
    wait_for(lambda: api(admin_port, "GET", "/healthz")[0] == 503, what="healthz 503")
    code, _, body = api(admin_port, "GET", "/healthz")
    assert (code, body) == (503, b"stopping\n")
    assert status(admin_port)["stopping"] is True
    wait_for(lambda: not port_open(port), what="listeners to close")
    t.join()
    assert result["r"][0] == 200 and result["r"][2] == b"b1\n"
    s.p.wait(10)
    assert s.p.returncode == 0
    assert not port_open(admin_port)


def test_dashboard_and_keepalive(procs):
    b1 = procs.origin("b1")
    _, _, admin_port = start(procs, [b1])
    code, h, body = api(admin_port, "GET", "/")
    assert code == 200 and h["content-type"].startswith("text/html")
    assert b"/api/v1/status" in body
    # HEAD, then several requests on one connection, pipelined.
    code, h, body = api(admin_port, "HEAD", "/api/v1/status")
    assert code == 200 and body == b"" and int(h["content-length"]) > 0
    with socket.create_connection(("127.0.0.1", admin_port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3 +
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 4 and data.endswith(b"ok\n")


# ---- sluice ctl ----

def test_ctl(procs):
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    _, port, admin_port = start(procs, [b1, b2])
    http_get(port)
    a = ("--admin", f"127.0.0.1:{admin_port}")
    r = ctl(*a, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^LISTENER\s+ADDRESS\s+MODE\s+POOL\s+ACTIVE\s+TOTAL$", out, re.M), out
    assert re.search(rf"^web\s+127\.0\.0\.1:{port}\s+http\s+app\s+0\s+2$", out, re.M), out
    assert "pool app (round_robin): 2 UP" in out
    assert re.search(r"^\s+BACKEND\s+ADDRESS\s+STATE\s+WEIGHT\s+ACTIVE\s+REQUESTS\s+FAILURES$", out, re.M)
    assert re.search(rf"^\s+b1\s+{re.escape(b1.address)}\s+UP\s+1\s+0\s+[01]\s+0$", out, re.M), out

    r = ctl(*a, "drain", "app/b1")
    assert (r.returncode, r.stdout) == (0, "app/b1: UP -> DRAINING\n"), r.stderr
    r = ctl(*a, "drain", "app/b1")
    assert (r.returncode, r.stdout) == (0, "app/b1: already DRAINING (unchanged)\n")
    assert re.search(r"^\s+b1\s+\S+\s+DRAINING\s", ctl(*a, "status").stdout, re.M)
    r = ctl(*a, "weight", "app/b2", "5")
    assert (r.returncode, r.stdout) == (0, "app/b2: weight 1 -> 5\n"), r.stderr
    r = ctl(*a, "disable", "app/b2")
    assert (r.returncode, r.stdout) == (0, "app/b2: UP -> DISABLED\n")
    r = ctl(*a, "enable", "app/b2")
    assert (r.returncode, r.stdout) == (0, "app/b2: DISABLED -> UP\n")

    r = ctl(*a, "--json", "status")
    assert r.returncode == 0 and json.loads(r.stdout)["pools"][0]["backends"][1]["weight"] == 5
    r = ctl(*a, "--json", "drain", "app/b2")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "DRAINING"

    # Errors: sluice's message and status, exit 1.
    r = ctl(*a, "drain", "app/nope")
    assert r.returncode == 1
    assert r.stderr == "sluice ctl: pool 'app' has no backend named 'nope' (HTTP 404)\n"
    r = ctl(*a, "weight", "nope/b1", "3")
    assert r.returncode == 1 and "no pool named 'nope' (HTTP 404)" in r.stderr
    r = ctl(*a, "disable", "app/b1", "--json")
    assert r.returncode == 0
    r = ctl(*a, "drain", "app/b1")
    assert r.returncode == 1 and "(HTTP 409)" in r.stderr

    # Bad usage: exit 2 with the usage text.
    for args in (("weight", "app/b1", "300"), ("weight", "app/b1"), ("drain", "b1"),
                 ("frobnicate",), (), ("status", "--bogus"), ("--admin",)):
        r = ctl(*a, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "usage: sluice ctl" in r.stderr


def test_ctl_when_sluice_is_down():
    port = free_port()
    r = ctl("--admin", f"127.0.0.1:{port}", "status")
    assert r.returncode == 1
    assert r.stderr == (f"sluice ctl: cannot connect to 127.0.0.1:{port}: Connection refused "
                        "— is sluice running with admin.listen set?\n")
    r = ctl("--admin", "localhost:9901", "status")
    assert r.returncode == 1 and "bad --admin address 'localhost:9901'" in r.stderr
    r = ctl("--admin", f"127.0.0.1:{port}", "--token-file", "/nonexistent", "drain", "a/b")
    assert r.returncode == 1 and "cannot read token file /nonexistent" in r.stderr


def test_help_lists_every_option():
    r = subprocess.run([SLUICE, "ctl", "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for word in ("--admin", "--token-file", "--json", "status", "drain POOL/BACKEND",
                 "enable POOL/BACKEND", "disable POOL/BACKEND", "weight POOL/BACKEND N", "reload",
                 "127.0.0.1:9901"):
        assert word in r.stdout, word
    r = subprocess.run([SLUICE, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for word in ("-c FILE", "check", "ctl", "--admin", "--token-file", "--json", "--version"):
        assert word in r.stdout, word
