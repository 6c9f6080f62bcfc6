"""What sluice promises against what it does: the metric families that
docs/operations.md lists (names, types, labels) against a real /metrics
exposition; the example configs and error messages of README.md and
docs/configuration.md against `sluice check`; the command line of DESIGN.md
and `sluice --help`; and the status lines sluice writes.

(Every config key of docs/configuration.md against the loader's schema, and
every examples/*.yaml, are checked by tests/unit/test_config.c.)"""
import http.client
import os
import re
import socket
import struct
import subprocess
import tempfile

from harness import ROOT, SLUICE, free_port, http_get, wait_for
from test_admin import parse_prometheus


def doc(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def documented_metrics():
    """{family: (type, [labels])} from the table under "## Metrics" of
    docs/operations.md."""
    text = doc("docs/operations.md")
    section = text[text.index("\n## Metrics\n"):]
    section = section[: section.index("\n## ", 1)]
    fams = {}
    for line in section.splitlines():
        m = re.match(r"\| `(sluice_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|", line)
        if m:
            assert m.group(1) not in fams, f"{m.group(1)} documented twice"
            fams[m.group(1)] = (m.group(2), re.findall(r"`([a-z_]+)`", m.group(3)))
    assert len(fams) >= 30, fams
    return fams


def check(config_text):
    fd, path = tempfile.mkstemp(prefix="sluice-contract-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(config_text)
    try:
        r = subprocess.run([SLUICE, "check", "-c", path], capture_output=True, text=True,
                           timeout=30)
    finally:
        os.unlink(path)
    return r


def dns_query(port, name):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    q += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(q, ("127.0.0.1", port))
        return s.recv(512)


# ---- metrics ----

def test_metric_families_are_the_documented_ones(procs, tmp_path):
    """Every family of the docs/operations.md table is exported with its
    documented type and labels, and every exported family is in the table,
    with a config that has every kind of listener (http with routes, a
    mirror and rate limits; tcp; udp; dns), health checks, a discovery pool
    and peers."""
    b1, b2 = procs.origin("b1"), procs.origin("b2")
    echo = procs.origin("t1", mode="tcp-echo")
    uecho = procs.origin("u1", mode="udp-echo")
    web, l4, dgram, gslb, admin = (free_port() for _ in range(5))
    key = tmp_path / "peers.key"
    key.write_bytes(os.urandom(48).hex().encode())
    config = f"""
workers: 2
drain_timeout: 2s
admin: {{listen: 127.0.0.1:{admin}}}
log: {{level: info, access: off}}
peers: {{listen: 127.0.0.1:{free_port()}, nodes: [127.0.0.1:{free_port()}], secret_file: {key}}}
listeners:
  - name: web
    bind: 127.0.0.1:{web}
    mode: http
    pool: app
    rate_limit: {{rate: 1000/s, burst: 100, shared: true}}
    routes:
      - match: {{path: /ping}}
        respond: {{status: 200, body: "pong"}}
      - match: {{path_prefix: /m/}}
        pool: app
        mirror: {{pool: shadow}}
        rate_limit: {{rate: 100/s}}
  - name: l4
    bind: 127.0.0.1:{l4}
    mode: tcp
    pool: tcp
  - name: dgram
    bind: 127.0.0.1:{dgram}
    mode: udp
    pool: udp
  - name: gslb
    bind: 127.0.0.1:{gslb}
    mode: dns
    records:
      - name: www.example.com
        regions: [{{name: eu, pool: app, addresses: [192.0.2.1]}}]
pools:
  - name: app
    balance: round_robin
    retries: {{attempts: 1}}
    circuit_breaker: {{max_requests: 1000}}
    outlier_detection: {{consecutive_failures: 3}}
    backends: [{{name: b1, address: {b1.address}}}, {{name: b2, address: {b2.address}}}]
    health_check: {{type: http, path: /health, interval: 500ms, timeout: 400ms}}
  - name: shadow
    backends: [{{name: s1, address: {b2.address}}}]
  - name: tcp
    backends: [{{name: t1, address: {echo.address}}}]
    health_check: {{type: tcp, interval: 1s}}
  - name: udp
    backends: [{{name: u1, address: {uecho.address}}}]
  - name: disc
    discovery: {{dns: app.invalid, port: 80, resolvers: ['127.0.0.1:{free_port()}'],
                 interval: 1s, timeout: 100ms}}
"""
    procs.sluice(config, wait_ports=(web, l4, admin))

    for path in ("/", "/", "/ping", "/m/x"):
        assert http_get(web, path)[0] == 200
    with socket.create_connection(("127.0.0.1", l4), timeout=5) as s:
        s.sendall(b"hello")
        assert s.recv(16) == b"hello"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"ping", ("127.0.0.1", dgram))
        assert s.recv(16).endswith(b"ping")
    assert dns_query(gslb, "www.example.com")[3] & 0x0f == 0      # NOERROR

    def scrape():
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        assert r.status == 200
        return parse_prometheus(body)

    # Mirror copies and L4 bytes are counted when they end.
    fams = wait_for(lambda: (lambda f: f if any(
        l["result"] == "ok" and v == 1 for n, l, v in f["sluice_mirror_requests_total"]["samples"])
        and any(l == {"listener": "l4", "direction": "in"} and v == 5
                for n, l, v in f["sluice_bytes_total"]["samples"]) else None)(scrape()),
        timeout=15, what="the mirror copy and the tcp connection counted")

    documented = documented_metrics()
    assert sorted(fams) == sorted(documented), (
        f"exported, not documented: {sorted(set(fams) - set(documented))}; "
        f"documented, not exported: {sorted(set(documented) - set(fams))}")
    for name, (typ, labels) in documented.items():
        fam = fams[name]
        assert fam["type"] == typ, f"{name}: exported as {fam['type']}, documented as {typ}"
        if name == "sluice_tls_ocsp_stapled":
            continue       # only for certificates with ocsp (test_tls.py)
        assert fam["samples"], f"{name}: no samples"
        for sname, got, _ in fam["samples"]:
            keys = sorted(k for k in got if not (sname.endswith("_bucket") and k == "le"))
            assert keys == sorted(labels), f"{sname}{got}: documented labels are {labels}"

    def value(name, **labels):
        (v,) = [v for n, l, v in fams[name]["samples"] if n == name and l == labels]
        return v
    assert value("sluice_connections_total", listener="dgram") == 1
    assert value("sluice_connections_active", listener="dgram") == 1      # the flow lives on
    assert value("sluice_dns_queries_total", listener="gslb") == 1
    assert value("sluice_requests_total", listener="web", pool="", backend="", code="200") == 1
    assert value("sluice_health_checks_total", pool="tcp", backend="t1", result="pass") >= 1


# ---- configs and error messages in the docs ----

def yaml_blocks(text):
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def with_free_ports(config):
    """The doc's bind addresses, on free loopback ports: `sluice check`
    binds each listener's address to see that it can."""
    return re.sub(r"bind: \"?(0\.0\.0\.0|\[::\]|127\.0\.0\.1):\d+\"?",
                  lambda m: f"bind: 127.0.0.1:{free_port()}", config)


def test_the_configs_in_the_readme_and_the_reference_pass_check():
    configs = [b for b in yaml_blocks(doc("README.md")) + yaml_blocks(doc("docs/configuration.md"))
               if re.search(r"^listeners:", b, re.M) and re.search(r"^pools:", b, re.M)]
    assert len(configs) >= 3
    for text in configs:
        r = check(with_free_ports(text))
        assert r.returncode == 0, f"{r.stdout}{r.stderr}\nfor:\n{text}"


def test_the_error_examples_of_the_reference_are_what_check_prints():
    """The "Some examples:" lines of docs/configuration.md, message for
    message (positions and ports differ: the doc's come from other files)."""
    text = doc("docs/configuration.md")
    block = text[text.index("Some examples:"):]
    block = block[block.index("```\n") + 4:]
    block = block[: block.index("```")]
    documented = [re.sub(r"^\S+?:\d+:\d+: error: ", "", l) for l in block.splitlines() if l]
    assert len(documented) == 5

    held = socket.socket()            # no SO_REUSEPORT: sluice cannot share it
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        r = check(f"""drain_timeout: 30
listeners:
  - name: web
    bind: 127.0.0.1:{port}
    mode: tcp
    tsl: {{}}
    pool: ap
pools:
  - name: app
    backends: [{{address: 127.0.0.1:1}}]
    health_check: {{type: tcp, interval: 2s, timeout: 5s}}
""")
        r2 = check(f"""listeners: [{{name: web, bind: 127.0.0.1:{port}, mode: tcp, pool: app}}]
pools: [{{name: app, backends: [{{address: 127.0.0.1:1}}]}}]
""")
    finally:
        held.close()
    assert r.returncode == 1 and r2.returncode == 1
    printed = [re.sub(r"^\S+?:\d+:\d+: error: ", "", l)
               for l in (r.stderr + r2.stderr).splitlines() if ": error: " in l]
    for message in documented:
        message = message.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        assert message in printed, f"documented {message!r}; sluice check prints {printed}"


def test_a_range_in_an_error_names_values_check_accepts():
    """"give 100ms to 1d" sent users to write `1d`, which is not a duration
    (ms, s, m or h): the bound an error names must itself be accepted."""
    pool = "pools: [{name: app, backends: [{address: 127.0.0.1:1}]"
    disc = (pool + ", discovery: {dns: app.internal, port: 80, "
            "resolvers: ['127.0.0.1:53'], interval: %s}}]\n")
    gslb = ("listeners:\n  - name: g\n    bind: 127.0.0.1:%d\n    mode: dns\n"
            "    zone: {name: example.com, nameservers: [ns1.example.com],\n"
            "           hostmaster: hostmaster@example.com, negative_ttl: %s}\n"
            "    records: [{name: www.example.com, ttl: %s,\n"
            "               regions: [{name: eu, pool: app, addresses: [192.0.2.1]}]}]\n")
    http = f"listeners: [{{name: web, bind: 127.0.0.1:{free_port()}, mode: http, pool: app}}]\n"
    cases = [
        (lambda v: http + disc % v, "discovery.interval"),
        (lambda v: gslb % (free_port(), v, "30s") + pool + "}]\n", "zone.negative_ttl"),
        (lambda v: gslb % (free_port(), "60s", v) + pool + "}]\n", "ttl"),
    ]
    for make, key in cases:
        r = check(make("1000h"))
        assert r.returncode == 1, r
        m = re.search(re.escape(key) + r": [^\n]*?(\d+[a-z]+) to (\d+[a-z]+)", r.stderr)
        assert m, r.stderr
        for bound in m.groups():
            r = check(make(bound))
            assert r.returncode == 0, f"{key}: {bound}, named in an error, is refused:\n{r.stderr}"


# ---- the command line ----

def run(*args, timeout=10):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_the_command_line_of_the_design():
    """`sluice --version | --help`, `sluice check -c FILE` (0, or 1 with
    FILE:LINE:COL lines), and a bad command line is refused with 2."""
    r = run("--version")
    assert r.returncode == 0 and re.fullmatch(r"sluice \d+\.\d+\.\d+\n", r.stdout), r
    r = run("--help")
    assert r.returncode == 0
    for word in ("sluice -c FILE", "sluice check -c FILE", "sluice ctl", "status", "drain",
                 "enable", "disable", "weight", "reload", "--version", "--help", "SIGHUP",
                 "SIGUSR1"):
        assert word in r.stdout, word
    good = f"""listeners: [{{name: web, bind: 127.0.0.1:{free_port()}, mode: tcp, pool: app}}]
pools: [{{name: app, backends: [{{address: 127.0.0.1:1}}]}}]
"""
    assert check(good).returncode == 0
    r = check("listeners: []\npools: []\n")
    assert r.returncode == 1 and re.search(r"^\S+\.yaml:1:\d+: error: ", r.stderr, re.M), r
    assert run("check").returncode == 2
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2


def test_an_unknown_option_is_refused_not_ignored(tmp_path):
    """`sluice -c FILE -t` (nginx's "test the config") must not start
    serving with -t ignored, nor `sluice check -c FILE --strict` pass
    without the check it asked for: an option sluice does not know is a
    usage error (exit 2), as in HAProxy and NGINX."""
    port = free_port()
    path = tmp_path / "ok.yaml"
    path.write_text(f"""listeners: [{{name: web, bind: 127.0.0.1:{port}, mode: tcp, pool: app}}]
pools: [{{name: app, backends: [{{address: 127.0.0.1:1}}]}}]
""")
    for args in (["-c", str(path), "-t"], ["--verbose", "-c", str(path)],
                 ["check", "-c", str(path), "--strict"], ["check", "-c", str(path), "extra"],
                 ["-c", str(path), str(path)], ["-c"]):
        p = subprocess.Popen([SLUICE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError(f"sluice {' '.join(args)} ran instead of refusing the option")
        assert p.returncode == 2, (args, p.returncode, out, err)
        assert "usage" in err, (args, err)
    # What stays accepted: every spelling of the config option.
    for args in (["check", "--config", str(path)], ["check", f"--config={path}"],
                 ["check", "-c", str(path)]):
        r = run(*args)
        assert r.returncode == 0, (args, r)


# ---- status lines ----

def status_line(port, method, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  "Content-Length: 0\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[0].decode()


REASONS = {200: "OK", 202: "Accepted", 203: "Non-Authoritative Information",
           205: "Reset Content", 402: "Payment Required", 406: "Not Acceptable",
           407: "Proxy Authentication Required", 410: "Gone", 412: "Precondition Failed",
           415: "Unsupported Media Type", 416: "Range Not Satisfiable",
           417: "Expectation Failed", 421: "Misdirected Request", 422: "Unprocessable Content",
           426: "Upgrade Required", 428: "Precondition Required",
           451: "Unavailable For Legal Reasons", 511: "Network Authentication Required"}


def test_respond_routes_send_the_registered_reason_phrase(procs):
    """`respond.status` takes any status 200..599; the status line carries
    its reason phrase from the IANA registry (RFC 9110 15), not "Unknown"."""
    port = free_port()
    routes = "\n".join(f"      - {{match: {{path: /s{c}}}, respond: {{status: {c}}}}}"
                       for c in REASONS)
    procs.sluice(f"""workers: 1
log: {{access: off}}
listeners:
  - name: web
    bind: 127.0.0.1:{port}
    mode: http
    routes:
{routes}
pools: [{{name: app, backends: [{{address: 127.0.0.1:1}}]}}]
""", wait_ports=(port,))
    for code, reason in REASONS.items():
        assert status_line(port, "GET", f"/s{code}") == f"HTTP/1.1 {code} {reason}"


def test_admin_reload_answers_202_accepted(procs):
    """POST /api/v1/reload answers 202 (docs/operations.md) with the
    status line of a 202."""
    port, admin = free_port(), free_port()
    s = procs.sluice(f"""workers: 1
admin: {{listen: 127.0.0.1:{admin}}}
log: {{access: off}}
listeners: [{{name: web, bind: 127.0.0.1:{port}, mode: tcp, pool: app}}]
pools: [{{name: app, backends: [{{address: 127.0.0.1:1}}]}}]
""", wait_ports=(port, admin))
    assert status_line(admin, "POST", "/api/v1/reload") == "HTTP/1.1 202 Accepted"
    wait_for(lambda: s.log_lines("reload_handover"), timeout=30, what="the reload handover")
