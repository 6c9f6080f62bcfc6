"""JSON Web Key Sets for `auth: {type: jwt}`: `jwks_file` (keys picked by
the token header's kid; skipped and refused keys; config errors with
FILE:LINE:COL) and `jwks_url` (fetched by sluice over verified HTTPS from
a Python server this test starts on loopback, with a CA made here by the
openssl command): tokens pass after the first fetch and get 401 before
it; a new kid passes after the fetch it asks for, without a reload; a
server gone, garbage, a huge body or a certificate that does not verify
are refused with a log line, and the last good set stays. Tokens are
signed with the openssl command as in test_jwt.py."""
import base64
import http.server
import json
import re
import ssl
import subprocess
import threading
import time

import pytest

from harness import SLUICE, free_port, wait_for
from test_jwt import OPENSSL, config, status, token


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, timeout=30).stdout


def rsa_jwk(pub):
    mod = run(OPENSSL, "rsa", "-pubin", "-in", pub, "-noout", "-modulus").decode()
    n = bytes.fromhex(mod.strip().split("=", 1)[1])
    return {"kty": "RSA", "n": b64u(n), "e": "AQAB"}


def ec_jwk(pub):
    der = run(OPENSSL, "pkey", "-pubin", "-in", pub, "-outform", "DER")
    point = der[-65:]                    # the uncompressed point ends the SPKI
    assert point[0] == 4
    return {"kty": "EC", "crv": "P-256", "x": b64u(point[1:33]), "y": b64u(point[33:])}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwks")
    out = {"dir": d}
    for name, args in (("r1", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                       ("r2", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                       ("weak", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
                       ("e1", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])):
        priv, pub = str(d / f"{name}.key"), str(d / f"{name}.pub")
        run(OPENSSL, "genpkey", *args, "-out", priv)
        run(OPENSSL, "pkey", "-in", priv, "-pubout", "-out", pub)
        jwk = ec_jwk(pub) if name == "e1" else rsa_jwk(pub)
        out[name] = {"priv": priv, "pub": pub, "jwk": {**jwk, "kid": name}}
    return out


def signed(keys, name, kid="same", alg=None, claims=None):
    """A token signed by key `name`; its header's kid is `name` unless
    given (None: no kid)."""
    alg = alg or ("ES256" if name == "e1" else "RS256")
    header = {"alg": alg, "typ": "JWT"}
    kid = name if kid == "same" else kid
    if kid is not None:
        header["kid"] = kid
    claims = claims or {"sub": "ann", "jti": f"{time.monotonic_ns()}"}
    return token(alg, claims, keys[name]["priv"], header)


def log_has(s, event, text):
    return any(text in l for l in s.log_lines(event))


# ---- jwks_file ----

def test_jwks_file_picks_the_key_by_kid(procs, keys, tmp_path):
    enc = {**keys["e1"]["jwk"], "kid": "enc1", "use": "enc"}
    okp = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
           "kid": "ed"}
    r2 = {**keys["r2"]["jwk"], "alg": "RS256", "use": "sig"}
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [keys["r1"]["jwk"], r2, keys["e1"]["jwk"], enc, okp]},
                               indent=1))
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, f"{{type: jwt, jwks_file: {path}}}"))
    # Skipped keys are warnings at jwks_file, with the file's line.
    assert re.search(r":\d+:\d+: warning: .*auth\.jwks_file '.*' line \d+ col \d+: key 4 "
                     r"\(kid \"enc1\"\): use \"enc\" is not \"sig\"", s.stderr()), s.stderr()
    assert 'kty "OKP" is not one sluice verifies' in s.stderr()

    for name in ("r1", "r2", "e1"):
        assert status(port, signed(keys, name))[0] == 200, name
    # No kid: the keys of the token's algorithm are tried.
    assert status(port, signed(keys, "r2", kid=None))[0] == 200
    assert status(port, signed(keys, "e1", kid=None))[0] == 200
    refused = [
        (signed(keys, "r2", kid="r1"), "bad signature"),        # another key's kid
        (signed(keys, "r1", kid="nope"), "unknown key"),
        (signed(keys, "e1", kid="r1"), "wrong algorithm"),      # an RSA key's kid on ES256
        (signed(keys, "e1", kid="enc1"), "unknown key"),        # use "enc": not loaded
        (signed(keys, "r1", kid="ed"), "unknown key"),          # OKP: skipped
        (token("none", {"sub": "x"}, header={"alg": "none", "kid": "r1"}), "wrong algorithm"),
        # Algorithm confusion: HS256 "signed" with the RSA public key's bytes.
        (token("HS256", {"sub": "x"}, open(keys["r1"]["pub"], "rb").read(),
               {"alg": "HS256", "kid": "r1"}), "wrong algorithm"),
        (signed(keys, "weak", kid="r1"), "bad signature"),
    ]
    for t, why in refused:
        assert status(port, t)[0] == 401, why
    wait_for(lambda: len(s.log_lines("auth_failed")) >= len(refused), what="failures logged")
    text = "\n".join(s.log_lines("auth_failed"))
    for _, why in refused:
        assert f'why="{why}"' in text, (why, text)


def check(tmp_path, auth, name="sluice.yaml"):
    text = ("listeners:\n  - name: web\n    bind: 127.0.0.1:%d\n    mode: http\n    pool: app\n"
            "    auth: %s\npools:\n  - name: app\n    backends:\n      - {address: 127.0.0.1:9}\n"
            % (free_port(), auth))
    path = tmp_path / name
    path.write_text(text)
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=20)
    return r.returncode, r.stdout + r.stderr, str(path)


def test_jwks_file_errors_name_the_place(keys, tmp_path):
    d = tmp_path
    bad_json = d / "bad.json"
    bad_json.write_text('{"keys": [\n  {"kty": "RSA",\n   "n": "AQAB" "e": "AQAB"}\n]}\n')
    weak = d / "weak.json"
    weak.write_text(json.dumps({"keys": [keys["r1"]["jwk"], keys["weak"]["jwk"]]}, indent=1))
    unusable = d / "unusable.json"
    unusable.write_text(json.dumps({"keys": [{**keys["r1"]["jwk"], "use": "enc"},
                                             {**keys["r1"]["jwk"], "alg": "RS512"}]}))
    wrong_alg = d / "wrong_alg.json"
    wrong_alg.write_text(json.dumps({"keys": [{**keys["e1"]["jwk"], "alg": "RS256"}]}))
    cases = [
        (f"{{type: jwt, jwks_file: {bad_json}}}",
         rf"auth\.jwks_file '{bad_json}' line 3 col 16: not valid JSON: expected ',' or '}}'"),
        (f"{{type: jwt, jwks_file: {weak}}}",
         rf"auth\.jwks_file '{weak}' line \d+ col 3: key 2 \(kid \"weak\"\): an RSA key of "
         r"1024 bits; RS256 keys must have 2048 or more"),
        (f"{{type: jwt, jwks_file: {unusable}}}",
         rf"auth\.jwks_file '{unusable}' line 1 col 10: no usable key \(2 skipped\)"),
        (f"{{type: jwt, jwks_file: {wrong_alg}}}", r"alg RS256 does not fit kty EC"),
        (f"{{type: jwt, jwks_file: {weak}, key_file: {keys['r1']['pub']}}}",
         r"type jwt needs key_file .* one of them"),
        (f"{{type: jwt, jwks_file: {d / 'missing.json'}}}", r"auth\.jwks_file: cannot read"),
        ("{type: jwt, jwks_url: 'http://127.0.0.1:9/keys'}", r"is not an https:// URL"),
        (f"{{type: jwt, jwks_file: {weak}, jwks_refresh: 1m}}",
         r"auth\.jwks_refresh only applies with jwks_url"),
        ("{type: jwt, jwks_url: 'https://127.0.0.1:9/keys', jwks_refresh: 0s}",
         r"auth\.jwks_refresh"),
    ]
    for auth, want in cases:
        rc, out, path = check(tmp_path, auth)
        assert rc == 1, (auth, out)
        # FILE:LINE:COL at the auth block's key (line 6 of the config).
        assert re.search(re.escape(path) + r":6:\d+: error: .*" + want, out), (want, out)


# ---- jwks_url ----

@pytest.fixture(scope="module")
def https_pki(tmp_path_factory):
    """A CA and certificates it signed for localhost (and 127.0.0.1) and
    for another name; a self-signed certificate for localhost."""
    d = tmp_path_factory.mktemp("jwks_pki")
    ca_key, ca = str(d / "ca.key"), str(d / "ca.pem")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(OPENSSL, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=sluice jwks test CA")
    out = {"ca": ca}
    for name, san in (("good", "DNS:localhost,IP:127.0.0.1"), ("other", "DNS:other.test")):
        key, csr, crt = str(d / f"{name}.key"), str(d / f"{name}.csr"), str(d / f"{name}.pem")
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        run(OPENSSL, "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        run(OPENSSL, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", str(d / f"{name}.ext"))
        out[name] = (crt, key)
    key, crt = str(d / "self.key"), str(d / "self.pem")
    run(OPENSSL, "req", "-x509", *ec, "-keyout", key, "-out", crt, "-days", "2", "-subj",
        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    out["self"] = (crt, key)
    return out


class JwksServer:
    """An HTTPS server on loopback answering every GET with `body` (and
    `status`), counting the requests; stopped by stop()."""

    def __init__(self, cert, port=0, body=b"{}"):
        self.body, self.status, self.requests, self.delay = body, 200, 0, 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                time.sleep(outer.delay)
                body = outer.body
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass                 # a client that refused a huge body

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass                     # handshakes sluice refused, cut bodies

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.httpd = Server(("127.0.0.1", port), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, keys_list):
        self.body = json.dumps({"keys": keys_list}).encode()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def servers():
    started = []
    yield lambda *a, **kw: started.append(JwksServer(*a, **kw)) or started[-1]
    for srv in started:
        srv.stop()


def url_auth(port, ca, refresh="1s"):
    return (f"{{type: jwt, jwks_url: 'https://localhost:{port}/.well-known/jwks.json', "
            f"jwks_ca: {ca}, jwks_refresh: {refresh}}}")


def test_jwks_url_fetched_at_start_and_a_new_kid_fetched_on_demand(procs, keys, https_pki,
                                                                    servers):
    srv = servers(https_pki["good"])
    srv.serve([keys["r1"]["jwk"]])
    o = procs.origin("b1")
    port = free_port()
    # A long refresh: only the first fetch and the one a new kid asks for.
    s = procs.sluice(config(port, o, url_auth(srv.port, https_pki["ca"], refresh="10m")))
    wait_for(lambda: log_has(s, "jwks_fetched", "keys=1"), what="the first fetch")
    assert "reason=start" in s.log_lines("jwks_fetched")[0]
    assert status(port, signed(keys, "r1"))[0] == 200
    assert srv.requests == 1
    # The provider rotates: r2 is added. The first token with kid r2 gets
    # 401 and asks for the set; once it arrives r2's tokens pass.
    srv.serve([keys["r1"]["jwk"], keys["r2"]["jwk"]])
    assert status(port, signed(keys, "r2"))[0] == 401
    wait_for(lambda: log_has(s, "jwks_fetched", "keys=2"), what="the refetch a kid asked for")
    assert "reason=unknown_kid" in s.log_lines("jwks_fetched")[-1]
    assert status(port, signed(keys, "r2"))[0] == 200
    assert status(port, signed(keys, "r1"))[0] == 200
    assert srv.requests == 2
    # More unknown kids within 30 s ask for nothing more.
    for _ in range(3):
        assert status(port, signed(keys, "e1"))[0] == 401
    time.sleep(0.5)
    assert srv.requests == 2
    assert log_has(s, "auth_failed", 'why="unknown key"')


def test_jwks_url_keeps_the_last_good_set(procs, keys, https_pki, servers):
    port_srv = free_port()
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, url_auth(port_srv, https_pki["ca"])))
    # Nothing serves yet: sluice started anyway, and tokens get 401.
    wait_for(lambda: log_has(s, "jwks_fetch_failed", "cannot connect"), what="a failed fetch")
    assert status(port, signed(keys, "r1"))[0] == 401
    wait_for(lambda: log_has(s, "auth_failed", 'why="no key set"'), what="no key set logged")
    srv = servers(https_pki["good"], port=port_srv)
    srv.serve([keys["r1"]["jwk"], keys["e1"]["jwk"]])
    wait_for(lambda: log_has(s, "jwks_fetched", "keys=2"), timeout=15, what="the first set")
    assert status(port, signed(keys, "r1"))[0] == 200

    def refused_then_still_good(body, why):
        failed = len(s.log_lines("jwks_fetch_failed"))
        srv.body = body
        wait_for(lambda: any(why in l and "keeping=last_good_set" in l
                             for l in s.log_lines("jwks_fetch_failed")[failed:]),
                 timeout=15, what=why)
        # New tokens (not remembered) still pass with the last good keys.
        assert status(port, signed(keys, "r1"))[0] == 200
        assert status(port, signed(keys, "e1"))[0] == 200

    refused_then_still_good(b"<html>not json</html>", "not a usable key set: line 1 col 1")
    refused_then_still_good(json.dumps({"keys": [keys["weak"]["jwk"]]}).encode(),
                            "an RSA key of 1024 bits")
    refused_then_still_good(b'{"keys": [], "pad": "' + b"x" * (300 * 1024) + b'"}',
                            "is larger than 262144 bytes")
    srv.status = 404
    refused_then_still_good(b"{}", "the server answered 404")
    srv.status = 200
    # The server goes away.
    srv.stop()
    failed = len(s.log_lines("jwks_fetch_failed"))
    wait_for(lambda: any("cannot connect" in l for l in s.log_lines("jwks_fetch_failed")[failed:]),
             timeout=15, what="fetch failing with the server gone")
    assert status(port, signed(keys, "r1"))[0] == 200
    assert status(port, signed(keys, "e1"))[0] == 200


def test_a_reload_takes_over_with_the_keys_fetched(procs, keys, https_pki, servers):
    """The process a reload starts fetches the set before it takes over (the
    old one serves meanwhile), so tokens never meet a process without
    keys."""
    srv = servers(https_pki["good"])
    srv.serve([keys["r1"]["jwk"]])
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, url_auth(srv.port, https_pki["ca"], refresh="10m")))
    wait_for(lambda: log_has(s, "jwks_fetched", "keys=1"), what="the first fetch")
    assert status(port, signed(keys, "r1"))[0] == 200
    srv.delay = 1.0                      # the new process's fetch is slow
    s.reload()
    assert srv.requests == 2
    assert status(port, signed(keys, "r1"))[0] == 200


@pytest.mark.parametrize("cert,why", [("self", "self-signed certificate"),
                                      ("other", "hostname mismatch")])
def test_jwks_url_certificate_must_verify(procs, keys, https_pki, servers, cert, why):
    srv = servers(https_pki[cert])
    srv.serve([keys["r1"]["jwk"]])
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, url_auth(srv.port, https_pki["ca"])))
    wait_for(lambda: log_has(s, "jwks_fetch_failed", "certificate does not verify"),
             what="a refused certificate")
    assert why in s.log_lines("jwks_fetch_failed")[0], s.log_lines("jwks_fetch_failed")
    assert not s.log_lines("jwks_fetched")
    assert status(port, signed(keys, "r1"))[0] == 401
