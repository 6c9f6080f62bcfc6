"""JWT bearer tokens at the edge, signed for the run with Python's hmac
(HS256) and the openssl command (RS256, ES256): a good token passes;
expired, early, wrong issuer or audience, tampered, alg none and an HS256
token against an RSA key are refused with 401 and logged; no token gets the
Bearer challenge."""
import base64
import hashlib
import hmac
import http.client
import json
import subprocess
import time

import pytest

from harness import free_port, wait_for

OPENSSL = "/usr/bin/openssl"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def der_to_raw(der):
    """An ECDSA DER signature (SEQUENCE of r, s) as JWS's r||s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def token(alg, claims, key=None, header=None):
    h = b64u(json.dumps(header or {"alg": alg, "typ": "JWT"}).encode())
    p = b64u(json.dumps(claims).encode())
    data = f"{h}.{p}".encode()
    if alg == "HS256":
        sig = hmac.new(key, data, hashlib.sha256).digest()
    elif alg in ("RS256", "ES256"):
        sig = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", key], input=data,
                             capture_output=True, check=True).stdout
        if alg == "ES256":
            sig = der_to_raw(sig)
    else:
        sig = b""
    return f"{h}.{p}.{b64u(sig)}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwt")
    out = {"secret": d / "secret"}
    out["secret"].write_bytes(b"0123456789abcdef0123456789abcdef-sluice\n")
    for name, args in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                       ("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])):
        priv, pub = str(d / f"{name}.key"), str(d / f"{name}.pub")
        subprocess.run([OPENSSL, "genpkey", *args, "-out", priv], check=True, capture_output=True)
        subprocess.run([OPENSSL, "pkey", "-in", priv, "-pubout", "-out", pub], check=True,
                       capture_output=True)
        out[name] = (priv, pub)
    return out


def config(port, origin, auth):
    return "\n".join([
        "workers: 1", "log: {level: info, access: off}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app", f"    auth: {auth}",
        "pools:", "  - name: app", "    backends:", f"      - {{name: b1, address: {origin.address}}}",
    ]) + "\n"


def status(port, tok=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Authorization": raw} if raw else {"Authorization": f"Bearer {tok}"} if tok else {}
    c.request("GET", "/", headers=h)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, r.getheader("WWW-Authenticate")


def test_jwt_each_algorithm_and_each_claim(procs, keys):
    o = procs.origin("b1")
    now = int(time.time())
    good = {"sub": "ann", "iss": "https://auth.test", "aud": ["web", "api"], "exp": now + 600,
            "nbf": now - 10}
    for alg, auth, key in (
            ("HS256", f"{{type: jwt, secret_file: {keys['secret']}, issuer: 'https://auth.test', "
                      f"audience: api}}", keys["secret"].read_bytes().strip()),
            ("RS256", f"{{type: jwt, key_file: {keys['rsa'][1]}, issuer: 'https://auth.test', "
                      f"audience: api}}", keys["rsa"][0]),
            ("ES256", f"{{type: jwt, key_file: {keys['ec'][1]}, issuer: 'https://auth.test', "
                      f"audience: api, realm: apis}}", keys["ec"][0])):
        port = free_port()
        s = procs.sluice(config(port, o, auth))
        assert status(port, token(alg, good, key))[0] == 200, alg
        # No token: the challenge, not counted as a failure.
        st, challenge = status(port)
        assert st == 401 and challenge.startswith("Bearer realm=")
        bad = [
            ({**good, "exp": now - 3600}, "expired"),
            ({**good, "nbf": now + 3600}, "not valid yet"),
            ({**good, "iss": "https://evil.test"}, "wrong issuer"),
            ({**good, "aud": "web"}, "wrong audience"),
            ({**good, "exp": 1e30}, "malformed claims"),
        ]
        for claims, why in bad:
            assert status(port, token(alg, claims, key))[0] == 401, (alg, why)
        # Tampered: the payload changed after signing.
        t = token(alg, good, key)
        h, p, sg = t.split(".")
        forged = b64u(json.dumps({**good, "sub": "root"}).encode())
        assert status(port, f"{h}.{forged}.{sg}")[0] == 401
        # alg none, and a malformed token.
        assert status(port, token("none", good, header={"alg": "none"}))[0] == 401
        assert status(port, "a.b")[0] == 401
        assert status(port, raw="Basic YW5uOng=")[0] == 401
        wait_for(lambda: len(s.log_lines("auth_failed")) >= 8, what="failures logged")
        text = "\n".join(s.log_lines("auth_failed"))
        for why in ("expired", "not valid yet", "wrong issuer", "wrong audience",
                    "bad signature", "wrong algorithm", "malformed token"):
            assert f'why="{why}"' in text, (alg, why, text)


def test_hs256_token_against_an_rsa_key_is_refused(procs, keys):
    """Algorithm confusion: a token MACed with the public key's bytes as an
    HS256 secret must not pass a key_file config."""
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, f"{{type: jwt, key_file: {keys['rsa'][1]}}}"))
    pub = open(keys["rsa"][1], "rb").read()
    assert status(port, token("HS256", {"sub": "x"}, pub))[0] == 401
    wait_for(lambda: any('why="wrong algorithm"' in l for l in s.log_lines("auth_failed")),
             what="wrong algorithm logged")
    # Without exp/nbf/iss/aud limits a good RS256 token passes.
    assert status(port, token("RS256", {"sub": "x"}, keys["rsa"][0]))[0] == 200


def test_remembered_tokens_still_expire(procs, keys):
    """A token that passed is remembered by the worker (its next requests
    skip the signature), but only until its exp."""
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(config(port, o, f"{{type: jwt, key_file: {keys['ec'][1]}, clock_skew: 0s}}"))
    t = token("ES256", {"sub": "ann", "exp": int(time.time()) + 2}, keys["ec"][0])
    for _ in range(5):
        assert status(port, t)[0] == 200
    time.sleep(3.1)
    assert status(port, t)[0] == 401
    wait_for(lambda: any('why="expired"' in l for l in s.log_lines("auth_failed")),
             what="expired logged")
