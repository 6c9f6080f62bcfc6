"""The GSLB responder (`mode: dns`), asked with dig: the nearest healthy
region's addresses for A and AAAA, the next region when the nearest one's
pool goes down under its health checks and back when it recovers, every
address when all are down, REFUSED for names it does not have, EDNS, and
no harm from malformed packets."""
import re
import socket
import struct
import subprocess
import urllib.request

from harness import SLUICE, free_port, recv_all, wait_for

DIG = "/usr/bin/dig"


def dig(port, name, qtype="A", *opts):
    r = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), name, qtype, "+tries=1", "+time=2", *opts],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def short(port, name, qtype="A"):
    return sorted(dig(port, name, qtype, "+short").split())


def status(out):
    return out.split("status: ", 1)[1].split(",", 1)[0]


def config(port, near, far, checks=True, near_clients="127.0.0.0/8", admin=None):
    hc = ("    health_check: {type: http, path: /health, interval: 200ms, timeout: 200ms,"
          " healthy_threshold: 1, unhealthy_threshold: 1}") if checks else ""
    return "\n".join([
        "workers: 2", "log: {level: info, access: off}",
        f"admin: {{listen: 127.0.0.1:{admin}}}" if admin else "", "listeners:", "  - name: gslb",
        f"    bind: 127.0.0.1:{port}", "    mode: dns", "    records:",
        "      - name: www.example.com", "        ttl: 20s", "        regions:",
        "          - {name: far, pool: far, addresses: [192.0.2.10, '2001:db8::10'],"
        " clients: [10.0.0.0/8]}",
        f"          - {{name: near, pool: near, addresses: [198.51.100.7, 198.51.100.8],"
        f" clients: [{near_clients}]}}",
        "      - name: api.example.com", "        regions:",
        "          - {name: only, pool: far, addresses: ['2001:db8::1']}",
        "pools:",
        "  - name: far", f"    backends: [{{name: f1, address: {far.address}}}]", hc,
        "  - name: near", f"    backends: [{{name: n1, address: {near.address}}}]", hc,
    ]) + "\n"


def check_fails(path, text):
    """Write text to path; `sluice check` must refuse it. Returns its stderr."""
    path.write_text(text)
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    return r.stderr


def post(origin, path):
    with socket.create_connection(("127.0.0.1", origin.port), timeout=5) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: o\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_nearest_healthy_region_and_failover(procs):
    near, far = procs.origin("near"), procs.origin("far")
    port = free_port()
    procs.sluice(config(port, near, far))
    # The health checks pass first (backends start DOWN until they do).
    wait_for(lambda: short(port, "www.example.com") == ["198.51.100.7", "198.51.100.8"],
             what="the near region's answer")
    out = dig(port, "www.example.com")
    assert status(out) == "NOERROR" and " aa" in out.split("flags:")[1].split(";")[0]
    assert "\t20\tIN\tA\t198.51.100.7" in out
    # Case does not matter; the near region has no IPv6 address: no AAAA.
    assert short(port, "WWW.Example.COM") == ["198.51.100.7", "198.51.100.8"]
    out = dig(port, "www.example.com", "AAAA")
    assert status(out) == "NOERROR" and "ANSWER: 0" in out
    # The near region's pool goes down: the far one answers, then back.
    post(near, "/health/fail")
    wait_for(lambda: short(port, "www.example.com") == ["192.0.2.10"], what="failover to far")
    assert short(port, "www.example.com", "AAAA") == ["2001:db8::10"]
    post(near, "/health/ok")
    wait_for(lambda: short(port, "www.example.com") == ["198.51.100.7", "198.51.100.8"],
             what="back to near")
    # Everything down: every address rather than none.
    post(near, "/health/fail")
    post(far, "/health/fail")
    wait_for(lambda: short(port, "www.example.com") == ["192.0.2.10", "198.51.100.7", "198.51.100.8"],
             what="all addresses when all regions are down")


def test_region_by_client_network(procs):
    near, far = procs.origin("near"), procs.origin("far")
    port = free_port()
    # 127.0.0.1 is in neither region's networks: the first healthy region.
    procs.sluice(config(port, near, far, checks=False, near_clients="172.16.0.0/12"))
    wait_for(lambda: short(port, "www.example.com") == ["192.0.2.10"], what="the first region")


def test_client_subnet_from_a_resolver(procs):
    # A resolver at 127.0.0.1 asking for a client in 10.1.2.0/24 (RFC 7871):
    # that client's region answers, for that whole network.
    near, far = procs.origin("near"), procs.origin("far")
    port = free_port()
    procs.sluice(config(port, near, far, checks=False))
    wait_for(lambda: short(port, "www.example.com") != [], what="an answer")
    out = dig(port, "www.example.com", "A", "+subnet=10.1.2.0/24")
    assert "CLIENT-SUBNET: 10.1.2.0/24/24" in out, out
    assert "\tA\t192.0.2.10" in out and "198.51.100.7" not in out
    # A subnet of no bits: the resolver's own address decides.
    out = dig(port, "www.example.com", "A", "+subnet=0.0.0.0/0")
    assert "198.51.100.7" in out and "CLIENT-SUBNET: 0.0.0.0/0/0" in out, out
    # A malformed one: FORMERR.
    out = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), "www.example.com", "+tries=1", "+time=2",
                          "+ednsopt=8:0001180008080808"], capture_output=True, text=True, timeout=10).stdout
    assert "status: FORMERR" in out, out


def test_names_types_and_edns(procs):
    near, far = procs.origin("near"), procs.origin("far")
    port, admin = free_port(), free_port()
    procs.sluice(config(port, near, far, checks=False, admin=admin), wait_ports=[admin])
    wait_for(lambda: short(port, "api.example.com", "AAAA") == ["2001:db8::1"], what="api AAAA")
    out = dig(port, "nope.example.com")
    assert status(out) == "REFUSED" and "ANSWER: 0" in out
    out = dig(port, "www.example.com", "MX")
    assert status(out) == "NOERROR" and "ANSWER: 0" in out
    out = dig(port, "www.example.com", "ANY")   # dig asks ANY over TCP
    assert "198.51.100.7" in out
    # EDNS: dig sends an OPT record with a cookie; the answer has our OPT.
    out = dig(port, "www.example.com")
    assert "EDNS: version: 0, flags:; udp: 1232" in out
    out = dig(port, "www.example.com", "A", "+noedns")
    assert "EDNS" not in out and status(out) == "NOERROR"
    # Every answered query is counted.
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    count = int(re.search(r'^sluice_dns_queries_total\{listener="gslb"\} (\d+)$', metrics, re.M).group(1))
    assert count >= 6, count


def query(qid, name, qtype=1):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", qtype, 1)


def test_dns_over_tcp(procs):
    near, far = procs.origin("near"), procs.origin("far")
    port = free_port()                       # free for TCP and UDP
    procs.sluice(config(port, near, far, checks=False))
    wait_for(lambda: short(port, "www.example.com") != [], what="an answer")
    assert sorted(dig(port, "www.example.com", "A", "+tcp", "+short").split()) == \
        ["198.51.100.7", "198.51.100.8"]
    # Three queries in one write on one connection: three answers, in order.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sk:
        msgs = [query(7, "www.example.com"), query(8, "nope.example.com"), query(9, "api.example.com", 28)]
        sk.sendall(b"".join(struct.pack(">H", len(m)) + m for m in msgs))
        data = b""
        answers = []
        while len(answers) < 3:
            chunk = sk.recv(4096)
            assert chunk, "closed early"
            data += chunk
            while len(data) >= 2 and len(data) >= 2 + struct.unpack(">H", data[:2])[0]:
                n = struct.unpack(">H", data[:2])[0]
                answers.append(data[2:2 + n])
                data = data[2 + n:]
        assert [struct.unpack(">H", a[:2])[0] for a in answers] == [7, 8, 9]
        assert [a[3] & 0xf for a in answers] == [0, 5, 0]          # NOERROR, REFUSED, NOERROR
        assert struct.unpack(">H", answers[0][6:8])[0] == 2          # two A records
    # A length that is no DNS message: the connection is closed.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sk:
        sk.sendall(b"\x00\x03abc")
        assert recv_all(sk) == b""


def test_malformed_packets_get_formerr_or_nothing(procs):
    near, far = procs.origin("near"), procs.origin("far")
    port = free_port()
    s = procs.sluice(config(port, near, far, checks=False))
    wait_for(lambda: short(port, "www.example.com") != [], what="an answer")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    header = struct.pack(">HHHHHH", 0xbeef, 0x0100, 2, 0, 0, 0)       # two questions
    sock.sendto(header + b"\x01a\x00\x00\x01\x00\x01" * 2, ("127.0.0.1", port))
    data, _ = sock.recvfrom(2048)
    assert data[:2] == b"\xbe\xef" and data[3] & 0xf == 1 and data[2] & 0x80   # FORMERR
    # A pointer in the question, a cut label, random bytes, a response: no
    # answer or FORMERR, and sluice stays up.
    for junk in (struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
                 struct.pack(">HHHHHH", 2, 0, 1, 0, 0, 0) + b"\x3fabc",
                 bytes(range(256)) * 3, b"\x00",
                 struct.pack(">HHHHHH", 3, 0x8000, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01"):
        sock.sendto(junk, ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(2048)
            assert data[3] & 0xf == 1, data          # FORMERR, never an answer
        except socket.timeout:
            pass
    sock.close()
    assert short(port, "www.example.com") == ["198.51.100.7", "198.51.100.8"]
    assert s.alive()


def test_config_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    err = check_fails(
        path,
        "listeners:\n"
        "  - name: g\n    bind: 127.0.0.1:5300\n    mode: dns\n    pool: p\n"
        "    records:\n"
        "      - name: 'bad name'\n        regions: [{name: r, pool: nope, addresses: [300.1.1.1]}]\n"
        "pools:\n  - name: p\n    backends: [{address: 127.0.0.1:2}]\n")
    assert f"{path}:5:5: error: listener 'g': pool does not apply to mode dns" in err
    assert f"{path}:7:15: error:" in err and "is not a host name" in err
    assert "pool 'nope' is not defined" in err
    assert "'300.1.1.1' is not an IPv4 or IPv6 address" in err
    err = check_fails(path, "listeners:\n  - {name: g, bind: 127.0.0.1:5300, mode: dns}\n"
                      "pools:\n  - name: p\n    backends: [{address: 127.0.0.1:2}]\n")
    assert "missing required key 'records'" in err, err


def test_reload_takes_new_records(procs):
    near, far = procs.origin("near"), procs.origin("far")
    port = free_port()
    s = procs.sluice(config(port, near, far, checks=False))
    wait_for(lambda: short(port, "www.example.com") == ["198.51.100.7", "198.51.100.8"], what="near")
    with open(s.config, "w") as f:
        f.write(config(port, near, far, checks=False).replace("198.51.100.8", "198.51.100.9"))
    s.reload()
    # The new process answers on the same sockets; no query goes unanswered.
    wait_for(lambda: short(port, "www.example.com") == ["198.51.100.7", "198.51.100.9"],
             what="the reloaded records")
    for _ in range(20):
        assert short(port, "www.example.com") == ["198.51.100.7", "198.51.100.9"]
    assert sorted(dig(port, "www.example.com", "A", "+tcp", "+short").split()) == \
        ["198.51.100.7", "198.51.100.9"]


def geo_config(port, db, origins, eu_clients=""):
    """Three regions chosen by GeoIP (a test database from mmdb_writer.py):
    eu by country (DE, FR), us by continent (NA), ap by country (JP)."""
    eu, us, ap = origins
    return "\n".join([
        "workers: 2", "log: {level: info, access: off}", "listeners:", "  - name: gslb",
        f"    bind: 127.0.0.1:{port}", "    mode: dns", f"    geoip: {db}", "    records:",
        "      - name: www.example.com", "        regions:",
        "          - {name: us, pool: us, addresses: [192.0.2.1], continents: [na]}",
        f"          - {{name: eu, pool: eu, addresses: [192.0.2.2], countries: [de, FR]{eu_clients}}}",
        "          - {name: ap, pool: ap, addresses: [192.0.2.3], countries: [JP], continents: [AS]}",
        "pools:",
        "  - name: us", f"    backends: [{{address: {us.address}}}]",
        "    health_check: {type: http, path: /health, interval: 200ms, timeout: 200ms,"
        " healthy_threshold: 1, unhealthy_threshold: 1}",
        "  - name: eu", f"    backends: [{{address: {eu.address}}}]",
        "  - name: ap", f"    backends: [{{address: {ap.address}}}]",
    ]) + "\n"


def test_region_by_country_and_continent(procs, tmp_path):
    import mmdb_writer
    db = str(tmp_path / "geo.mmdb")
    mmdb_writer.write(db, {"10.1.0.0/16": ("DE", "EU"), "10.2.0.0/16": ("US", "NA"),
                           "10.3.0.0/16": ("KR", "AS"), "10.4.0.0/16": ("IT", "EU"),
                           "10.5.0.0/25": ("CA", "NA")})
    origins = [procs.origin(n) for n in ("eu", "us", "ap")]
    port = free_port()
    procs.sluice(geo_config(port, db, origins))
    wait_for(lambda: short(port, "www.example.com") != [], what="an answer")

    def answer(subnet):
        out = dig(port, "www.example.com", "A", f"+subnet={subnet}")
        return re.findall(r"\tA\t([\d.]+)", out), re.search(r"CLIENT-SUBNET: (\S+)", out).group(1)

    assert answer("10.1.2.0/24") == (["192.0.2.2"], "10.1.2.0/24/24")   # DE: eu by country
    assert answer("10.2.9.0/24") == (["192.0.2.1"], "10.2.9.0/24/24")   # US: us by continent
    assert answer("10.3.0.0/24")[0] == ["192.0.2.3"]                     # KR: ap by continent
    # IT is in EU, but no region lists Italy or Europe: the first region.
    assert answer("10.4.0.0/24")[0] == ["192.0.2.1"]
    # Not in the database at all, and the resolver's own 127.0.0.1: the first.
    assert answer("192.168.0.0/16")[0] == ["192.0.2.1"]
    assert short(port, "www.example.com") == ["192.0.2.1"]
    # The database's network (a /25) is narrower than the query's /24: the
    # answer says it holds for the /25 only (RFC 7871 scope).
    assert answer("10.5.0.0/24") == (["192.0.2.1"], "10.5.0.0/24/25")
    # The us region's pool goes down: a US client goes to the first healthy
    # region (no other lists NA), a DE client is unaffected.
    post(origins[1], "/health/fail")
    wait_for(lambda: answer("10.2.9.0/24")[0] == ["192.0.2.2"], what="us to fail over")
    assert answer("10.1.2.0/24")[0] == ["192.0.2.2"]


def test_client_networks_come_before_geoip(procs, tmp_path):
    import mmdb_writer
    db = str(tmp_path / "geo.mmdb")
    mmdb_writer.write(db, {"10.1.0.0/16": ("DE", "EU")})
    origins = [procs.origin(n) for n in ("eu", "us", "ap")]
    port = free_port()
    # 10.1.7.0/24 is German, but the ap region claims that network.
    text = geo_config(port, db, origins).replace("countries: [JP]",
                                                 "countries: [JP], clients: [10.1.7.0/24]")
    procs.sluice(text)
    wait_for(lambda: short(port, "www.example.com") != [], what="an answer")
    out = dig(port, "www.example.com", "A", "+subnet=10.1.7.0/24")
    assert "\tA\t192.0.2.3" in out
    out = dig(port, "www.example.com", "A", "+subnet=10.1.8.0/24")
    assert "\tA\t192.0.2.2" in out


def test_geoip_config_errors(tmp_path):
    import mmdb_writer
    db = tmp_path / "geo.mmdb"
    mmdb_writer.write(str(db), {"10.1.0.0/16": ("DE", "EU")})
    path = tmp_path / "bad.yaml"
    base = ("listeners:\n  - name: g\n    bind: 127.0.0.1:5300\n    mode: dns\n{geo}"
            "    records:\n      - name: a.test\n        regions:\n"
            "          - {{name: r, pool: p, addresses: [192.0.2.1], {codes}}}\n"
            "pools:\n  - name: p\n    backends: [{{address: 127.0.0.1:2}}]\n")
    cases = [
        ("", "countries: [DE]", "8:67: error: region 'r' of record 'a.test' of listener 'g': "
         "countries: needs the listener's geoip database (listeners[].geoip)"),
        (f"    geoip: {db}\n", "countries: [Germany]", "9:68: error: region 'r' of record "
         "'a.test' of listener 'g': countries: 'Germany' is not a two-letter country code"),
        (f"    geoip: {db}\n", "continents: [EU, XX]", "9:73: error: region 'r' of record "
         "'a.test' of listener 'g': continents: 'XX' is not a continent code"),
        (f"    geoip: {tmp_path}/none.mmdb\n", "countries: [DE]",
         f"5:12: error: listener 'g': geoip: cannot open '{tmp_path}/none.mmdb'"),
        (f"    geoip: {path}\n", "countries: [DE]", "5:12: error: listener 'g': geoip: cannot open"),
    ]
    for geo, codes, want in cases:
        path.write_text(base.format(geo=geo, codes=codes))
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and f"{path}:{want}" in r.stderr, (want, r.stderr)
    # geoip on a listener that is not dns.
    path.write_text("listeners:\n  - {name: w, bind: 127.0.0.1:5300, mode: tcp, pool: p, "
                    f"geoip: {db}}}\npools:\n  - name: p\n    backends: [{{address: 127.0.0.1:2}}]\n")
    r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "geoip" in r.stderr and "dns" in r.stderr, r.stderr


def test_zone_soa_ns_and_negative_answers(procs):
    """With a zone, sluice is the authority for every name under it: the
    apex's SOA and NS, NXDOMAIN with the SOA for names it has no record of
    (so resolvers cache the answer, RFC 2308), NODATA with the SOA for
    names that exist without that type, REFUSED outside the zone."""
    o = procs.origin("o")
    port = free_port()
    procs.sluice("\n".join([
        "log: {level: info, access: off}", "listeners:", "  - name: gslb",
        f"    bind: 127.0.0.1:{port}", "    mode: dns",
        "    zone: {name: GSLB.example.com, nameservers: [ns1.example.com, ns2.example.com],"
        " hostmaster: hostmaster@example.com, negative_ttl: 45s}",
        "    records:",
        "      - {name: www.gslb.example.com, ttl: 20s,"
        " regions: [{name: r, pool: p, addresses: [192.0.2.1]}]}",
        "      - {name: a.b.gslb.example.com, regions: [{name: r, pool: p, addresses: [192.0.2.2]}]}",
        "pools:", "  - name: p", f"    backends: [{{address: {o.address}}}]"]) + "\n")
    wait_for(lambda: short(port, "www.gslb.example.com") == ["192.0.2.1"], what="an answer")
    soa = r"gslb\.example\.com\.\t45\tIN\tSOA\tns1\.example\.com\. hostmaster\.example\.com\. \d+ 3600 600 604800 45"

    out = dig(port, "gslb.example.com", "SOA")
    assert status(out) == "NOERROR" and " aa" in out.split("flags:")[1].split(";")[0]
    assert re.search(r"ANSWER SECTION:\n" + soa, out), out
    assert short(port, "gslb.example.com", "NS") == ["ns1.example.com.", "ns2.example.com."]
    # A name with no record: NXDOMAIN, the SOA in the authority section.
    out = dig(port, "nope.gslb.example.com")
    assert status(out) == "NXDOMAIN" and re.search(r"AUTHORITY SECTION:\n" + soa, out), out
    # Names that exist without the type: NODATA with the SOA.
    for name, qtype in (("www.gslb.example.com", "AAAA"), ("b.gslb.example.com", "A"),
                        ("gslb.example.com", "A")):
        out = dig(port, name, qtype)
        assert status(out) == "NOERROR" and "ANSWER: 0" in out, out
        assert re.search(r"AUTHORITY SECTION:\n" + soa, out), out
    # A positive answer has no authority section; outside the zone: REFUSED.
    out = dig(port, "www.gslb.example.com")
    assert "AUTHORITY: 0" in out and "\t20\tIN\tA\t192.0.2.1" in out, out
    assert status(dig(port, "www.example.org")) == "REFUSED"
    # Over TCP the same.
    out = dig(port, "nope.gslb.example.com", "A", "+tcp")
    assert status(out) == "NXDOMAIN" and re.search(soa, out), out


def test_zone_config_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    cases = [
        ("{name: gslb.example.com, nameservers: [ns1.example.com], hostmaster: a@example.com}",
         "www.other.com", "record 'www.other.com' of listener 'g': name: 'www.other.com' is not "
         "in the listener's zone gslb.example.com"),
        ("{name: gslb.example.com, nameservers: [], hostmaster: a@example.com}",
         "www.gslb.example.com", "zone.nameservers: give 1 to 8"),
        ("{name: 'gslb..example.com', nameservers: [ns1.example.com], hostmaster: a@example.com}",
         "www.gslb.example.com", "zone.name: 'gslb..example.com' is not a host name"),
        ("{name: gslb.example.com, nameservers: [ns1.example.com], hostmaster: 'a.b@example.com'}",
         "www.gslb.example.com", "zone.hostmaster: 'a.b@example.com' is not an address"),
        ("{name: gslb.example.com, nameservers: [ns1.example.com]}",
         "www.gslb.example.com", "missing required key 'zone.hostmaster'"),
    ]
    for zone, name, want in cases:
        path.write_text("listeners:\n  - name: g\n    bind: 127.0.0.1:5300\n    mode: dns\n"
                        f"    zone: {zone}\n    records:\n      - name: {name}\n"
                        "        regions: [{name: r, pool: p, addresses: [192.0.2.1]}]\n"
                        "pools:\n  - name: p\n    backends: [{address: 127.0.0.1:2}]\n")
        r = subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and want in r.stderr, (want, r.stderr)


def ecs_query(qid, name, subnet, source=24):
    """An A query with EDNS Client Subnet (RFC 7871) for subnet/source."""
    q = query(qid, name)
    q = q[:10] + struct.pack(">H", 1) + q[12:]               # ARCOUNT 1
    addr = socket.inet_aton(subnet)[:(source + 7) // 8]
    opt = struct.pack(">HBB", 1, source, 0) + addr
    return q + b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 4 + len(opt)) + \
        struct.pack(">HH", 8, len(opt)) + opt


def parse_answer(msg):
    """(the A addresses, the Client Subnet scope or None) of a response."""
    qd, an, _, ar = struct.unpack(">HHHH", msg[4:12])
    i = 12
    for _ in range(qd):
        while msg[i]:
            i += msg[i] + 1
        i += 5
    addrs, scope = [], None

    def rr(i):
        if msg[i] & 0xc0 == 0xc0:
            i += 2
        else:
            while msg[i]:
                i += msg[i] + 1
            i += 1
        t, _, _, rdlen = struct.unpack(">HHIH", msg[i:i + 10])
        return t, msg[i + 10:i + 10 + rdlen], i + 10 + rdlen
    for _ in range(an):
        t, rdata, i = rr(i)
        if t == 1:
            addrs.append(socket.inet_ntoa(rdata))
    for _ in range(ar):
        t, rdata, i = rr(i)
        if t == 41 and len(rdata) >= 8 and struct.unpack(">H", rdata[:2])[0] == 8:
            scope = rdata[7]
    return sorted(addrs), scope


def ask_many(port, subnets, source=24):
    """One query per subnet, in flight together; {subnet: (addrs, scope)}."""
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for k in range(0, len(subnets), 200):
            batch = subnets[k:k + 200]
            for j, net in enumerate(batch):
                s.sendto(ecs_query(k + j, "www.example.com", net, source), ("127.0.0.1", port))
            for _ in batch:
                msg = s.recv(4096)
                out[subnets[struct.unpack(">H", msg[:2])[0]]] = parse_answer(msg)
    assert len(out) == len(subnets)
    return out


def weighted_config(port, origins, extra_c=""):
    hc = ("    health_check: {type: http, path: /health, interval: 200ms, timeout: 200ms,"
          " healthy_threshold: 1, unhealthy_threshold: 1}")
    lines = ["workers: 2", "log: {level: info, access: off}", "listeners:", "  - name: gslb",
             f"    bind: 127.0.0.1:{port}", "    mode: dns", "    records:",
             "      - name: www.example.com", "        policy: weighted", "        regions:",
             "          - {name: a, pool: a, addresses: [192.0.2.1], weight: 3}",
             "          - {name: b, pool: b, addresses: [192.0.2.2]}",
             f"          - {{name: c, pool: c, addresses: [192.0.2.3], weight: 0{extra_c}}}",
             "pools:"]
    for name, o in zip("abc", origins):
        lines += [f"  - name: {name}", f"    backends: [{{name: {name}1, address: {o.address}}}]", hc]
    return "\n".join(lines) + "\n"


def test_weighted_regions(procs):
    """policy: weighted spreads the clients no `clients` network claims over
    the healthy regions by weight, the same region for every address of a
    /24, and when a region fails only its clients move."""
    origins = [procs.origin(n) for n in "abc"]
    port = free_port()
    procs.sluice(weighted_config(port, origins, extra_c=", clients: [10.9.0.0/16]"))
    subnets = [f"{11 + k // 250}.{k % 250}.{(k * 7) % 256}.0" for k in range(4000)]
    wait_for(lambda: ask_many(port, subnets[:1])[subnets[0]][0] != [], what="answers")
    first = ask_many(port, subnets)
    share = {ip: sum(1 for a, _ in first.values() if a == [ip])
             for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3")}
    assert sum(share.values()) == len(subnets), share
    print("shares of 4000 /24s:", share)
    assert 0.72 <= share["192.0.2.1"] / len(subnets) <= 0.78, share     # weight 3 of 4
    assert share["192.0.2.3"] == 0, share                              # weight 0
    assert {s for _, s in first.values()} == {24}
    # Every address of a /24 gets its network's answer, scope 24 for a /32.
    for net in subnets[:50]:
        host = net.rsplit(".", 1)[0] + ".77"
        assert ask_many(port, [host], source=32)[host] == (first[net][0], 24)
    # The claimed network goes to c, weight 0 or not.
    assert ask_many(port, ["10.9.3.0"])["10.9.3.0"][0] == ["192.0.2.3"]
    # b fails: its clients go to a; a's clients stay where they are.
    post(origins[1], "/health/fail")
    wait_for(lambda: all(a == ["192.0.2.1"] for a, _ in ask_many(port, subnets).values()),
             what="every client on a")
    # b recovers: exactly the clients it had come back.
    post(origins[1], "/health/ok")
    wait_for(lambda: ask_many(port, subnets) == first, what="the first answers again")
    # a and b fail: the weight-0 region c is the only healthy one left, and
    # every client falls back to it (the first healthy region).
    post(origins[0], "/health/fail")
    post(origins[1], "/health/fail")
    wait_for(lambda: all(a == ["192.0.2.3"] for a, _ in ask_many(port, subnets[:200]).values()),
             what="every client on c")


def test_weighted_config_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    err = check_fails(
        path,
        "listeners:\n"
        "  - name: g\n    bind: 127.0.0.1:5300\n    mode: dns\n"
        "    records:\n"
        "      - name: a.example\n        policy: fastest\n"
        "        regions: [{name: r, pool: p, addresses: [192.0.2.1]}]\n"
        "      - name: b.example\n"
        "        regions: [{name: r, pool: p, addresses: [192.0.2.1], weight: 2}]\n"
        "      - name: c.example\n        policy: weighted\n"
        "        regions: [{name: r, pool: p, addresses: [192.0.2.1], weight: 1001}]\n"
        "pools:\n  - name: p\n    backends: [{address: 127.0.0.1:2}]\n")
    assert f"{path}:7:17: error: record 'a.example' of listener 'g': policy: 'fastest'; " \
        "expected failover or weighted" in err, err
    assert f"{path}:10:70: error:" in err and \
        "weight: only with the record's policy: weighted" in err, err
    assert f"{path}:13:70: error:" in err and "weight: expected a whole number from 0 to 1000" \
        in err, err


def test_answers_with_the_next_healthy_regions(procs):
    # answers: 2: the nearest healthy region's addresses first, then the next
    # healthy one's in the list; a region that goes down is left out.
    near, far = procs.origin("near"), procs.origin("far")
    port = free_port()
    text = config(port, near, far).replace(
        "      - name: www.example.com\n        ttl: 20s\n",
        "      - name: www.example.com\n        ttl: 20s\n        answers: 2\n")
    assert "answers: 2" in text
    procs.sluice(text)

    def in_order():
        out = dig(port, "www.example.com", "A", "+short")
        return out.split()

    # From 127.0.0.1 the near region is chosen (its clients), then far.
    wait_for(lambda: in_order() == ["198.51.100.7", "198.51.100.8", "192.0.2.10"],
             what="near's addresses, then far's")
    # AAAA: near has none, far's follows.
    assert dig(port, "www.example.com", "AAAA", "+short").split() == ["2001:db8::10"]
    # far goes down: only near is left to answer.
    post(far, "/health/fail")
    wait_for(lambda: in_order() == ["198.51.100.7", "198.51.100.8"], what="far left out")
    post(far, "/health/ok")
    wait_for(lambda: in_order() == ["198.51.100.7", "198.51.100.8", "192.0.2.10"],
             what="far back")


def test_answers_config_errors(tmp_path):
    base = config(53, type("O", (), {"address": "127.0.0.1:1"})(),
                  type("O", (), {"address": "127.0.0.1:2"})())
    for bad in ("0", "9", "two"):
        err = check_fails(tmp_path / f"a{bad}.yaml", base.replace(
            "        ttl: 20s\n", f"        ttl: 20s\n        answers: {bad}\n"))
        assert "answers" in err, err
