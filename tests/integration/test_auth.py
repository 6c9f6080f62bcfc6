"""HTTP Basic auth at the edge, with curl and raw clients against a users
file holding SHA-512-crypt and bcrypt hashes made for the run: who gets in,
the 401 challenge, auth: off on a route, the counter and log, a worker that
keeps serving while a slow hash runs, and the users file's errors."""
import base64
import http.client
import json
import re
import subprocess
import threading
import time
import warnings

from harness import SLUICE, free_port, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

CURL = "/usr/bin/curl"


def bcrypt(password, cost):
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << cost))


def sha512(password):
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def config(port, aport, origin, users_file, workers=2):
    return "\n".join([
        f"workers: {workers}", "log: {level: info, access: off}",
        f"admin: {{listen: 127.0.0.1:{aport}}}", "listeners:", "  - name: web",
        f"    bind: 127.0.0.1:{port}", "    mode: http", "    pool: app",
        f"    auth: {{type: basic, realm: staff, users_file: {users_file}}}",
        "    routes:",
        "      - {match: {path: /public}, pool: app, auth: off}",
        "      - {match: {path_prefix: /}, pool: app}",
        "pools:", "  - name: app", "    backends:", f"      - {{name: b1, address: {origin.address}}}",
    ]) + "\n"


def get(port, path="/", auth=None, header=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {}
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    if header:
        h["Authorization"] = header
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("WWW-Authenticate"), body


def test_basic_auth(procs, tmp_path):
    users = tmp_path / "users"
    users.write_text(f"# staff\nann:{sha512('s3cret')}\n\nbob:{bcrypt('pa:ss', 5)}\n")
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    s = procs.sluice(config(port, aport, o, users))
    status, challenge, body = get(port)
    assert (status, challenge) == (401, 'Basic realm="staff", charset="UTF-8"')
    assert body == b"authentication required\n"
    assert get(port, "/public")[0] == 200                  # auth: off on this route
    assert get(port, auth="ann:s3cret")[::2] == (200, b"b1\n")
    assert get(port, auth="bob:pa:ss")[::2] == (200, b"b1\n")   # a colon in the password
    # curl, and the credentials reach the backend unchanged.
    r = subprocess.run([CURL, "-sS", "-u", "ann:s3cret", f"http://127.0.0.1:{port}/echo"],
                       capture_output=True, text=True, timeout=10)
    h = {k.lower(): v for k, v in json.loads(r.stdout)["headers"]}
    assert h["authorization"] == "Basic " + base64.b64encode(b"ann:s3cret").decode()
    # Wrong password, unknown user: 401, counted, logged.
    assert get(port, auth="ann:wrong")[0] == 401
    assert get(port, auth="eve:s3cret")[0] == 401
    # Malformed credentials: 401, not counted as a failed login.
    for bad in ["Basic !!!!", "Bearer abc", "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic", "Basic YW5u=Og=="]:
        assert get(port, header=bad)[0] == 401, bad
    wait_for(lambda: len(s.log_lines("auth_failed")) == 2, what="two auth_failed lines")
    lines = s.log_lines("auth_failed")
    assert 'user="ann"' in lines[0] and "unknown_user" not in lines[0]
    assert 'user="eve"' in lines[1] and "unknown_user=true" in lines[1]
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    assert re.search(r'^sluice_auth_failures_total\{listener="web"\} 2$', text, re.M), text


def test_slow_hashes_do_not_stop_the_worker(procs, tmp_path):
    """bcrypt cost 12 takes about 250 ms here. With one worker, requests to
    an open route are answered while wrong passwords are being hashed, and
    good credentials are hashed once, then remembered."""
    users = tmp_path / "users"
    users.write_text(f"ann:{bcrypt('right', 12)}\n")
    o = procs.origin("b1")
    port, aport = free_port(), free_port()
    procs.sluice(config(port, aport, o, users, workers=1))
    done = []

    def attacker():
        for _ in range(4):
            done.append(get(port, auth="ann:wrong")[0])

    threads = [threading.Thread(target=attacker) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    slowest = 0.0
    for _ in range(20):
        t0 = time.monotonic()
        assert get(port, "/public")[0] == 200
        slowest = max(slowest, time.monotonic() - t0)
    busy = any(t.is_alive() for t in threads)
    for t in threads:
        t.join()
    assert done == [401] * 8
    assert busy, "the wrong passwords were all hashed before the open route was asked"
    assert slowest < 0.2, f"an open request waited {slowest:.3f}s behind password hashing"
    # Good credentials: the first request pays for the hash, the next do not.
    t0 = time.monotonic()
    assert get(port, auth="ann:right")[0] == 200
    first = time.monotonic() - t0
    t0 = time.monotonic()
    for _ in range(10):
        assert get(port, auth="ann:right")[0] == 200
    assert first > 0.1 and (time.monotonic() - t0) < first, (first, time.monotonic() - t0)


def test_users_file_errors(tmp_path):
    o_port = free_port()

    class O:
        address = f"127.0.0.1:{o_port}"

    cases = [
        ("ann:$apr1$abc$def\n", r"line 1: user 'ann': an MD5 or SHA-1 hash"),
        (f"ann:{sha512('x')}\nann:{sha512('y')}\n", r"line 2: user 'ann' appears twice"),
        ("# nobody\n", r"has no users"),
        ("justaname\n", r"line 1: expected user:hash"),
        ("ann:plaintext\n", r"line 1: user 'ann': not a bcrypt"),
    ]
    for text, words in cases:
        users = tmp_path / "users"
        users.write_text(text)
        path = tmp_path / "c.yaml"
        path.write_text(config(free_port(), free_port(), O, users))
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, r.stdout + r.stderr
        assert re.search(rf"{re.escape(str(path))}:9:\d+: error: .*{words}", r.stdout + r.stderr), \
            (words, r.stdout + r.stderr)
