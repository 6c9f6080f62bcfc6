"""The benchmarks compare sluice with NGINX and HAProxy on equivalent
configs. These tests keep them equivalent: every HTTP template of bench/
must load in the real NGINX and HAProxy, and, in front of one origin that
records what it receives, the three balancers of the HTTP bench must send
the same forwarding fields and answer with the same request id. (They
drifted once: sluice came to write five fields and a request id while the
others were asked for X-Forwarded-For only, which made their work per
request smaller than sluice's.)"""
import http.server
import os
import re
import subprocess
import sys
import threading
import urllib.request

import pytest

from harness import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
sys.path.append(BENCH)
import benchlib  # noqa: E402

benchlib.free_port = free_port       # the tests' port policy, not port 0

NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
HTTP_TEMPLATE_DIRS = ["auth", "grpc", "http", "http2", "jwt", "mirror", "rate_limit", "scaling", "tls"]


def tls_files(tmp):
    """A throwaway key and self-signed certificate for the TLS and JWT templates."""
    key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-subj", "/CN=bench.test", "-days", "1"], check=True, capture_output=True, timeout=60)
    pem = os.path.join(tmp, "both.pem")
    with open(pem, "w") as out:
        out.write(open(cert).read() + open(key).read())
    pub = os.path.join(tmp, "pub.pem")
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True,
                   timeout=30)
    return {"CERT": cert, "KEY": key, "PEM": pem, "PUB": pub}


def template_values(tmp):
    users = os.path.join(tmp, "users")
    with open(users, "w") as f:
        f.write("bench:$2y$05$abcdefghijklmnopqrstuu1Xq8m7o2mW6XoVjJ7Vq0jvUQ6iO5Y4e\n")
    values = dict(LISTEN="127.0.0.1:%d" % free_port(),
                  NGINX_BACKENDS="        server 127.0.0.1:9;", HAPROXY_BACKENDS="    server b1 127.0.0.1:9",
                  NGINX_FORWARDING=benchlib.NGINX_FORWARDING,
                  NGINX_GRPC_FORWARDING=benchlib.NGINX_GRPC_FORWARDING,
                  HAPROXY_FORWARDING=benchlib.HAPROXY_FORWARDING,
                  USERS=users, USER="bench", HASH="$2y$05$abcdefghijklmnopqrstuu1Xq8m7o2mW6XoVjJ7Vq0jvUQ6iO5Y4e",
                  WORKERS="1", RATE="100", BURST="10", SHADOW="127.0.0.1:9", NGINX_MIRROR="")
    values.update(tls_files(tmp))
    return values


@pytest.mark.parametrize("name", HTTP_TEMPLATE_DIRS)
def test_bench_templates_load_in_nginx_and_haproxy(name, tmp_path):
    values = template_values(str(tmp_path))
    for conf, argv in (("nginx.conf", lambda c: [NGINX, "-t", "-p", str(tmp_path) + "/", "-e",
                                                     str(tmp_path / "nginx-error.log"), "-c", c]),
                       ("haproxy.cfg", lambda c: [HAPROXY, "-c", "-f", c])):
        if not os.path.exists(os.path.join(BENCH, name, conf + ".in")):
            continue
        path = benchlib.render(os.path.join(BENCH, name), conf, str(tmp_path), **values)
        text = open(path).read()
        assert "X-Forwarded-Proto" in text and "X-Request-Id" in text, \
            "%s/%s does not ask for sluice's forwarding fields" % (name, conf)
        r = subprocess.run(argv(path), capture_output=True, timeout=30)
        assert r.returncode == 0, "%s/%s: %s" % (name, conf, r.stderr.decode(errors="replace"))


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 and remembers the request's fields."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_GET(self):
        Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_http_bench_balancers_send_the_same_forwarding_fields(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    got = {}
    try:
        for name in ("sluice", "nginx", "haproxy"):
            b = benchlib.start_balancer(name, os.path.join(BENCH, "http"), str(tmp_path / name),
                                        [srv.server_address[1]])
            Recorder.seen.clear()
            req = urllib.request.Request("http://127.0.0.1:%d/x" % b.port,
                                         headers={"X-Real-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.6"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200
                answer_id = r.headers.get("X-Request-Id")
            fields = Recorder.seen[0]
            host = "127.0.0.1:%d" % b.port
            assert fields.get("host") == host, (name, fields)
            assert "x-real-ip" not in fields, (name, fields)
            assert fields.get("x-request-id") and fields["x-request-id"] == answer_id, (name, fields, answer_id)
            assert re.fullmatch(r"[0-9a-fA-F-]{32,36}", fields["x-request-id"]), (name, fields)
            got[name] = {k: fields.get(k, "").replace(host, "HOST") for k in
                         ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded")}
    finally:
        benchlib.stop_all()
        srv.shutdown()
    assert got["sluice"] == {"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http",
                             "x-forwarded-host": "HOST", "forwarded": 'for=127.0.0.1;host="HOST";proto=http'}
    assert got["nginx"] == got["sluice"]
    assert got["haproxy"] == got["sluice"]
