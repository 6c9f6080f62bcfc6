"""Edge cases of the config loader, through `sluice check`: every bad config
is refused with FILE:LINE:COL pointing at the offending token, in bounded
time, and nothing is silently accepted to behave as something else."""
import os
import subprocess

import pytest

from harness import SLUICE, free_port


def check(tmp_path, text, timeout=20):
    """Runs `sluice check` on text; a hang fails the test (TimeoutExpired)."""
    path = tmp_path / "sluice.yaml"
    path.write_text(text)
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout + r.stderr, str(path)


def pos_of(text, needle):
    """LINE:COL (1-based) of the first occurrence of needle in text."""
    i = text.index(needle)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return f"{line}:{col}"


def config(listener_extra="", top="", more_listeners=""):
    return (top +
            "listeners:\n"
            "  - name: web\n"
            f"    bind: 127.0.0.1:{free_port()}\n"
            "    mode: http\n"
            "    pool: app\n" + listener_extra + more_listeners +
            "pools:\n"
            "  - name: app\n"
            "    backends:\n"
            "      - {address: 127.0.0.1:9}\n")


def assert_error_at(tmp_path, text, needle, words):
    rc, out, path = check(tmp_path, text)
    assert rc == 1, out
    where = pos_of(text, needle)
    lines = [l for l in out.splitlines() if l.startswith(f"{path}:{where}: error:")]
    assert lines, (where, out)
    assert any(words in l for l in lines), (words, out)
    assert "AddressSanitizer" not in out and "runtime error" not in out, out


def test_http_and_tcp_listeners_cannot_share_a_port(tmp_path):
    # Both are stream sockets bound with SO_REUSEPORT: both would bind, and
    # the kernel would hand each new connection to either, an http client
    # now and then landing on the raw tcp forwarder (and the other way).
    port = free_port()
    text = ("listeners:\n"
            "  - name: web\n"
            f"    bind: 127.0.0.1:{port}\n"
            "    mode: http\n"
            "    pool: app\n"
            "  - name: raw\n"
            f"    bind: '127.0.0.1:{port}'\n"
            "    mode: tcp\n"
            "    pool: app\n"
            "pools:\n"
            "  - name: app\n"
            "    backends:\n"
            "      - {address: 127.0.0.1:9}\n")
    assert_error_at(tmp_path, text, f"'127.0.0.1:{port}'", "is already used by the listener at 2:5")


def test_tcp_and_udp_listeners_may_share_a_port(tmp_path):
    # Different socket types do not share: a tcp and a udp listener on one
    # port is the usual DNS-style setup and stays accepted.
    port = free_port()
    text = ("listeners:\n"
            f"  - {{name: t, bind: 127.0.0.1:{port}, mode: tcp, pool: app}}\n"
            f"  - {{name: u, bind: 127.0.0.1:{port}, mode: udp, pool: app}}\n"
            "pools:\n"
            "  - name: app\n"
            "    backends:\n"
            "      - {address: 127.0.0.1:9}\n")
    rc, out, _ = check(tmp_path, text)
    assert rc == 0, out


@pytest.fixture
def fifo(tmp_path):
    """A named pipe nobody writes to: opening it for reading blocks."""
    path = str(tmp_path / "pipe")
    os.mkfifo(path)
    return path


def _fifo_cases(fifo, pki):
    crt, key = pki["a"]
    dns_port, peer_port, peer_node, admin_port = (free_port() for _ in range(4))
    return {
        "auth.secret_file": config(f"    auth: {{type: jwt, secret_file: {fifo}}}\n"),
        "auth.key_file": config(f"    auth: {{type: jwt, key_file: {fifo}}}\n"),
        "auth.users_file": config(f"    auth: {{type: basic, users_file: {fifo}}}\n"),
        "peers.secret_file": config(top=f"peers: {{listen: 127.0.0.1:{peer_port}, nodes: "
                                        f"[127.0.0.1:{peer_node}], secret_file: {fifo}}}\n"),
        "admin.token_file": config(top=f"admin: {{listen: 127.0.0.1:{admin_port}, "
                                       f"token_file: {fifo}}}\n"),
        "geoip": config(more_listeners=(
            "  - name: gslb\n"
            f"    bind: 127.0.0.1:{dns_port}\n"
            "    mode: dns\n"
            f"    geoip: {fifo}\n"
            "    records:\n"
            "      - name: www.example.com\n"
            "        regions:\n"
            "          - {name: r1, pool: app, addresses: [192.0.2.1]}\n")),
        "tls.certificates[].ocsp": config(f"    tls: {{certificates: [{{cert: {crt}, key: {key}, "
                                          f"ocsp: {fifo}}}]}}\n"),
    }


@pytest.mark.parametrize("key", ["auth.secret_file", "auth.key_file", "auth.users_file",
                                 "peers.secret_file", "admin.token_file", "geoip",
                                 "tls.certificates[].ocsp"])
def test_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path, fifo, pki, key):
    # A FIFO (or /dev/stdin, a device) named where a key, users or database
    # file belongs used to block `sluice check`, startup and a reload in
    # open(2) forever, waiting for a writer. It is not a regular file: say so
    # at the path, as for tls certificates.
    text = _fifo_cases(fifo, pki)[key]
    assert_error_at(tmp_path, text, fifo, f"'{fifo}' is not")


@pytest.mark.parametrize("where,extra,top", [
    ("timeouts.connect", "", ""),
    ("client_idle", "    timeouts: {client_idle: 18446744073709551615ms}\n", ""),
    ("drain_timeout", "", "drain_timeout: 5124095576030h\n"),
    ("tunnel_idle", "    timeouts: {tunnel_idle: 999999999999999s}\n", ""),
], ids=["connect", "client_idle", "drain_timeout", "tunnel_idle"])
def test_duration_too_long_is_refused(tmp_path, where, extra, top):
    # A deadline is now + duration in 64-bit milliseconds: a duration near
    # 2^64 ms wrapped it into the past, so "wait practically forever" (a
    # connect timeout of 18446744073709551615ms) timed out every connect at
    # once, every backend answering 502.
    text = config(extra, top)
    if where == "timeouts.connect":
        text = text.replace("    backends:\n",
                            "    timeouts: {connect: 18446744073709551615ms}\n    backends:\n")
    needle = {"timeouts.connect": "18446744073709551615ms",
              "client_idle": "18446744073709551615ms",
              "drain_timeout": "5124095576030h",
              "tunnel_idle": "999999999999999s"}[where]
    assert_error_at(tmp_path, text, needle, "too long")


def test_long_durations_that_make_sense_are_accepted(tmp_path):
    rc, out, _ = check(tmp_path, config("    timeouts: {tunnel_idle: 8760h}\n",
                                        "drain_timeout: 24h\n"))
    assert rc == 0, out


@pytest.mark.parametrize("cidr", [
    # Cut at 63 bytes, this read as 192.168.0.0/0: trust every address.
    "192.168.0.0/" + "0" * 60 + "16",
    "10.0.0.0/+8",
    "10.0.0.0/ 8",
    "10.0.0.0/8 ",
], ids=["zeros", "plus", "space", "trailing-space"])
def test_malformed_prefix_length_is_refused(tmp_path, cidr):
    text = config(f"    trusted_proxies: ['{cidr}']\n")
    assert_error_at(tmp_path, text, f"'{cidr}'", "trusted_proxies")


def test_prefix_lengths_that_are_valid_are_accepted(tmp_path):
    text = config("    trusted_proxies: [10.0.0.0/8, '::/0', 192.168.1.1, 'fd00::/8', 1.2.3.4/32]\n")
    rc, out, _ = check(tmp_path, text)
    assert rc == 0, out


def test_many_keys_in_one_mapping_are_checked_in_bounded_time(tmp_path):
    # Duplicate keys were found by comparing every key with every earlier
    # one: a 3 MB file of one big mapping kept `sluice check` (and a
    # reload) busy for minutes. The repeat is still reported, at itself.
    keys = "".join(f"  k{i}: 1\n" for i in range(250000))
    text = config(top="x-big:\n" + keys + "  k7: 2\n")
    rc, out, path = check(tmp_path, text, timeout=60)
    assert rc == 1, out[-2000:]
    assert f"{path}:250002:3: error: duplicate key 'k7' (first at 9:3)" in out, out[-2000:]


def test_merge_keys_cannot_blow_up_the_file(tmp_path):
    # Every "<<: *a" copies the anchored mapping's keys: 3000 mappings
    # merging one of 3000 keys, a 68 KB file, made 9 million keys (and took
    # a minute of quadratic key checks). Past a bound it is an error at the
    # merge that crosses it, like the limits on listeners and backends.
    anchor = "x-a: &a {" + ", ".join(f"k{i}: 1" for i in range(3000)) + "}\n"
    users = "x-b:\n" + "".join("  - {<<: *a}\n" for _ in range(3000))
    text = config(top=anchor + users)
    rc, out, path = check(tmp_path, text, timeout=60)
    assert rc == 1, out[-2000:]
    assert "merge keys" in out and f"{path}:" in out, out[-2000:]
    assert out.count("\n") < 20, out[-2000:]


def test_merge_keys_still_merge(tmp_path):
    # The usual use: shared settings in an x- anchor, merged into each
    # entry; keys written in the entry win over merged ones. (An empty
    # source is nothing to merge; it once made a NULL + 0 under UBSan.)
    text = ("x-defaults: &defaults {mode: http, pool: app}\n"
            "x-more: &more {mode: tcp, max_connections: '7'}\n"
            "x-empty: &empty {}\n"
            "listeners:\n"
            f"  - {{<<: [*empty, *defaults, *more], name: web, bind: 127.0.0.1:{free_port()}}}\n"
            f"  - {{<<: *more, name: raw, bind: 127.0.0.1:{free_port()}, pool: app, "
            "mode: http, mode: tcp}\n"
            "pools:\n"
            "  - {name: app, backends: [{address: 127.0.0.1:9}]}\n")
    rc, out, path = check(tmp_path, text)
    assert rc == 1, out
    # Only the repeated key written in the second entry is an error.
    errors = [l for l in out.splitlines() if ": error:" in l]
    assert len(errors) == 1 and "duplicate key 'mode'" in errors[0], out
    rc, out, path = check(tmp_path, text.replace(", mode: http, mode: tcp}", "}"))
    assert rc == 0, out



def _secret(tmp_path):
    path = tmp_path / "peers.key"
    path.write_text("k" * 40 + "\n")
    path.chmod(0o600)
    return str(path)


def test_listener_on_the_admin_port_is_refused(tmp_path):
    # The admin API binds without SO_REUSEPORT: `sluice check` said ok, and
    # then sluice could not start ("admin.listen: cannot bind").
    port = free_port()
    text = (f"admin: {{listen: '127.0.0.1:{port}'}}\n"
            "listeners:\n"
            f"  - {{name: web, bind: 127.0.0.1:{port}, mode: http, pool: app}}\n"
            "pools:\n"
            "  - {name: app, backends: [{address: 127.0.0.1:9}]}\n")
    assert_error_at(tmp_path, text, f"127.0.0.1:{port},", "is already used by admin.listen at 1:17")


def test_udp_listener_on_the_peers_port_is_refused(tmp_path):
    # peers.listen is a UDP socket with SO_REUSEPORT: on a udp listener's
    # address both bound, and the kernel gave the peers socket a share of
    # the clients' datagrams (dropped there as badly signed), and the
    # listener a share of the peers' updates (forwarded to a backend).
    port = free_port()
    text = (f"peers: {{listen: '127.0.0.1:{port}', nodes: [127.0.0.1:{free_port()}], "
            f"secret_file: {_secret(tmp_path)}}}\n"
            "listeners:\n"
            f"  - {{name: u, bind: 127.0.0.1:{port}, mode: udp, pool: app}}\n"
            "pools:\n"
            "  - {name: app, backends: [{address: 127.0.0.1:9}]}\n")
    assert_error_at(tmp_path, text, f"127.0.0.1:{port},", "is already used by peers.listen at 1:17")


def test_admin_and_peers_ports_shared_with_the_other_protocol_are_accepted(tmp_path):
    # TCP and UDP ports are apart: the admin API (tcp) beside a udp listener,
    # peers (udp) beside an http listener.
    a, p = free_port(), free_port()
    text = (f"admin: {{listen: 127.0.0.1:{a}}}\n"
            f"peers: {{listen: 127.0.0.1:{p}, nodes: [127.0.0.1:{free_port()}], "
            f"secret_file: {_secret(tmp_path)}}}\n"
            "listeners:\n"
            f"  - {{name: u, bind: 127.0.0.1:{a}, mode: udp, pool: app}}\n"
            f"  - {{name: web, bind: 127.0.0.1:{p}, mode: http, pool: app}}\n"
            "pools:\n"
            "  - {name: app, backends: [{address: 127.0.0.1:9}]}\n")
    rc, out, _ = check(tmp_path, text)
    assert rc == 0, out


@pytest.mark.parametrize("route,needle", [
    ("set_headers: {X-A: '1', Content-Length: '0'}", "Content-Length"),
    ("remove_headers: [x-a, transfer-encoding]", "transfer-encoding"),
    ("remove_headers: [Host]", "Host"),
    ("set_response_headers: {Host: x}", "Host"),
    ("remove_headers: [connection]", "connection"),
    ("set_response_headers: {content-length: '5'}", "content-length"),
    ("remove_response_headers: [Transfer-Encoding]", "Transfer-Encoding"),
    ("mirror: {pool: app, set_headers: {content-length: '0'}}", "content-length"),
], ids=["set-cl", "remove-te", "remove-host", "set-response-host", "remove-connection",
        "set-response-cl",
        "remove-response-te", "mirror-cl"])
def test_route_cannot_rewrite_the_fields_sluice_frames_with(tmp_path, route, needle):
    # sluice writes Host, the framing fields and the connection fields
    # itself, from the message it forwards. A route's set_headers
    # {content-length: '0'} went out beside a streamed body, which the
    # backend then read as the next request on the shared connection (a
    # smuggled request); set_headers {Host: x} sent a second Host field
    # (it now replaces the client's: test_route_edges.py).
    text = config("    routes:\n"
                  "      - match: {path_prefix: /}\n"
                  "        pool: app\n"
                  f"        {route}\n")
    assert_error_at(tmp_path, text, needle, "sluice writes")


def test_route_may_set_and_match_other_fields(tmp_path):
    text = config("    routes:\n"
                  "      - match: {path_prefix: /, headers: {content-length: '0'}}\n"
                  "        pool: app\n"
                  "        set_headers: {X-Content-Length: '1', Hostname: x}\n"
                  "        remove_headers: [x-connection]\n"
                  "        set_response_headers: {X-Transfer-Encoding: x}\n")
    rc, out, _ = check(tmp_path, text)
    assert rc == 0, out

