"""The GSLB responder's choice by where the client is and whose network it
is in: the nearest healthy region by great-circle distance (regions'
`location`, the client's from the listener's `geoip` City database) and the
region that lists the client's autonomous system (`asns`, from the
listener's `geoip_asn` database). Asked with dig from client subnets (EDNS
Client Subnet) that the test's own MaxMind databases (mmdb_writer.py)
place; the Client Subnet scope says which network each answer holds for."""
import re
import subprocess

import mmdb_writer
from harness import SLUICE, free_port, wait_for
from test_gslb import dig

FRA, IAD, NRT = "192.0.2.1", "192.0.2.2", "192.0.2.3"
# Where the regions are: Frankfurt, Washington Dulles, Tokyo Narita.
LOCATIONS = {"fra": (50.03, 8.57), "iad": (38.95, -77.45), "nrt": (35.77, 140.39)}
HC = ("    health_check: {type: http, path: /health, interval: 200ms, timeout: 200ms,"
      " healthy_threshold: 1, unhealthy_threshold: 1}")


def located(lat, lon, country=None, continent=None):
    """A City database record: a location (doubles, as MaxMind writes
    them), and a country and continent when given."""
    rec = {"location": {"latitude": float(lat), "longitude": float(lon),
                        "accuracy_radius": (100, "uint16")}}
    if country:
        rec["country"] = {"iso_code": country}
        rec["continent"] = {"code": continent}
    return rec


def asn(number):
    return {"autonomous_system_number": (number, "uint32"),
            "autonomous_system_organization": f"AS{number} test"}


def region(name, address, extra=""):
    lat, lon = LOCATIONS[name]
    return (f"          - {{name: {name}, pool: {name}, addresses: [{address}],"
            f" location: {{latitude: {lat}, longitude: {lon}}}{extra}}}")


def geo_config(port, origins, city, asn_db=None, regions=None, records=()):
    head = ["workers: 2", "log: {level: info, access: off}", "listeners:", "  - name: gslb",
            f"    bind: 127.0.0.1:{port}", "    mode: dns", f"    geoip: {city}"]
    if asn_db:
        head.append(f"    geoip_asn: {asn_db}")
    lines = head + ["    records:", "      - name: www.example.com", "        regions:"]
    # In list order nrt comes first: the fallback for clients no rule
    # places, and not the next nearest for a European one.
    lines += regions or [region("nrt", NRT), region("iad", IAD), region("fra", FRA)]
    lines += list(records)
    lines.append("pools:")
    for name in ("fra", "iad", "nrt"):
        lines += [f"  - name: {name}", f"    backends: [{{address: {origins[name].address}}}]", HC]
    return "\n".join(lines) + "\n"


def answer(port, subnet, name="www.example.com"):
    """(the A addresses, the answer's Client Subnet scope) for a client in subnet."""
    out = dig(port, name, "A", f"+subnet={subnet}")
    scope = re.search(r"CLIENT-SUBNET: \S+/(\d+)", out)
    return re.findall(r"\tA\t([\d.]+)", out), int(scope.group(1)) if scope else None


def test_nearest_healthy_region_by_distance(procs, tmp_path):
    city = str(tmp_path / "city.mmdb")
    mmdb_writer.write(city, {
        "10.2.0.0/16": located(40.71, -74.01, "US", "NA"),        # New York
        "10.4.0.0/16": located(52.23, 21.01, "PL", "EU"),         # Warsaw
        "10.5.0.0/16": ("BR", "SA"),                              # a country, no location
        "10.6.0.0/25": located(-33.87, 151.21, "AU", "OC"),       # Sydney
        # Nuku'alofa, Tonga: east of the antimeridian (-175.2), 7,900 km
        # from Tokyo (+140.4) across it, 12,100 km from Washington (-77.5):
        # longitudes compared without wrapping around would pick iad.
        "10.7.0.0/16": located(-21.14, -175.2, "TO", "OC"),
    }, "sluice-test-City")
    origins = {n: procs.origin(n) for n in ("fra", "iad", "nrt")}
    port = free_port()
    # Two regions at one place: list order decides, whichever is first.
    tie = ["      - name: tie1.example.com", "        regions:",
           "          - {name: a, pool: fra, addresses: [192.0.2.11], location: {latitude: 0, longitude: 0}}",
           "          - {name: b, pool: nrt, addresses: [192.0.2.12], location: {latitude: 0, longitude: 0}}",
           "      - name: tie2.example.com", "        regions:",
           "          - {name: b, pool: nrt, addresses: [192.0.2.12], location: {latitude: 0, longitude: 0}}",
           "          - {name: a, pool: fra, addresses: [192.0.2.11], location: {latitude: 0, longitude: 0}}",
           # policy weighted: distance comes first, the weight spreads only
           # the clients the database does not place.
           "      - name: w.example.com", "        policy: weighted", "        regions:",
           region("fra", FRA, ", weight: 0"), region("iad", IAD, ", weight: 1").replace(
               ", location: {latitude: 38.95, longitude: -77.45}", "")]
    procs.sluice(geo_config(port, origins, city, records=tie))
    wait_for(lambda: answer(port, "10.4.0.0/24")[0] == [FRA], what="every region up")

    assert answer(port, "10.4.0.0/24") == ([FRA], 24)          # Warsaw: Frankfurt, 900 km
    assert answer(port, "10.2.9.0/24") == ([IAD], 24)          # New York: Washington, 350 km
    assert answer(port, "10.7.0.0/24") == ([NRT], 24)          # Tonga: Tokyo, across -180
    assert answer(port, "10.4.1.77/32") == ([FRA], 32)
    # The database's network (a /25) is narrower than the asked /24: the
    # answer holds for the /25 only (RFC 7871 scope), as for countries.
    assert answer(port, "10.6.0.0/24") == ([NRT], 25)          # Sydney: Tokyo
    # No location: a country without one, an address the database lacks,
    # the resolver's own 127.0.0.1: the next rule, the first healthy region.
    assert answer(port, "10.5.3.0/24")[0] == [NRT]
    assert answer(port, "192.168.7.0/24")[0] == [NRT]
    assert sorted(dig(port, "www.example.com", "A", "+short").split()) == [NRT]
    # Equal distances: the first in the list.
    assert answer(port, "10.4.0.0/24", "tie1.example.com")[0] == ["192.0.2.11"]
    assert answer(port, "10.4.0.0/24", "tie2.example.com")[0] == ["192.0.2.12"]
    # Weighted: a placed client goes to the nearest even at weight 0; one
    # the database does not place is spread by weight (iad, the only one).
    assert answer(port, "10.4.0.0/24", "w.example.com") == ([FRA], 24)
    assert answer(port, "192.168.7.0/24", "w.example.com") == ([IAD], 24)

    # Frankfurt's backend stops: its health check fails, and Warsaw goes to
    # the next nearest, Washington (7,200 km), not the first region in the
    # list, Tokyo (8,600 km). Other clients keep their regions.
    fra_port = origins["fra"].port
    origins["fra"].stop()
    wait_for(lambda: answer(port, "10.4.0.0/24")[0] == [IAD], what="Warsaw to the next nearest")
    assert answer(port, "10.2.9.0/24")[0] == [IAD]
    assert answer(port, "10.7.0.0/24")[0] == [NRT]
    assert answer(port, "10.4.0.0/24", "tie1.example.com")[0] == ["192.0.2.12"]
    # Washington goes too: Tokyo for everyone.
    origins["iad"].stop()
    wait_for(lambda: answer(port, "10.4.0.0/24")[0] == [NRT], what="Warsaw to the last region")
    assert answer(port, "10.2.9.0/24")[0] == [NRT]
    # Frankfurt's backend comes back: Warsaw with it.
    procs.origin("fra", port=fra_port)
    wait_for(lambda: answer(port, "10.4.0.0/24")[0] == [FRA], what="Warsaw back to Frankfurt")
    assert answer(port, "10.2.9.0/24")[0] == [FRA]             # nearer than Tokyo


def test_autonomous_system_before_country_and_distance(procs, tmp_path):
    city, asns = str(tmp_path / "city.mmdb"), str(tmp_path / "asn.mmdb")
    mmdb_writer.write(city, {
        "10.1.0.0/16": located(50.11, 8.68, "DE", "EU"),          # Frankfurt
        "10.4.0.0/16": located(52.23, 21.01, "PL", "EU"),         # Warsaw
        "10.8.0.0/16": located(52.23, 21.01, "PL", "EU"),
    }, "sluice-test-City")
    mmdb_writer.write(asns, {
        "10.1.0.0/16": asn(64500),
        "10.8.0.0/25": asn(64502),
        "10.4.0.0/26": asn(64999),                                # listed by no region
        "10.9.0.0/16": asn(64501),                                # a /16 the City database lacks
    }, "GeoLite2-ASN")
    origins = {n: procs.origin(n) for n in ("fra", "iad", "nrt")}
    port = free_port()
    regions = [region("fra", FRA, ", countries: [DE]"),
               region("iad", IAD, ", asns: [64501, 64500]"),
               region("nrt", NRT, ", asns: [64502, 64500], clients: [10.1.9.0/24]")]
    procs.sluice(geo_config(port, origins, city, asns, regions))
    wait_for(lambda: answer(port, "10.1.2.0/24")[0] == [IAD], what="every region up")

    # 10.1/16 is German and in Frankfurt, but AS64500, which iad lists
    # first: the autonomous system wins over country and distance.
    assert answer(port, "10.1.2.0/24") == ([IAD], 24)
    # A `clients` network still comes first.
    assert answer(port, "10.1.9.0/24") == ([NRT], 24)
    # Only the ASN database knows the client: it decides alone.
    assert answer(port, "10.9.4.0/24") == ([IAD], 24)
    # The ASN's network, a /25, is narrower than the asked /24: scope 25.
    assert answer(port, "10.8.0.0/24") == ([NRT], 25)
    # An ASN no region lists: distance decides (Warsaw: Frankfurt), and the
    # answer holds only where both databases answer alike, the ASN
    # database's /26 inside the City database's /16.
    assert answer(port, "10.4.0.0/24") == ([FRA], 26)
    # iad goes down: AS64500 is listed by nrt too, next in the list.
    origins["iad"].stop()
    wait_for(lambda: answer(port, "10.1.2.0/24")[0] == [NRT], what="AS64500 to nrt")
    # ... and nrt too: the country, Germany, decides.
    origins["nrt"].stop()
    wait_for(lambda: answer(port, "10.1.2.0/24")[0] == [FRA], what="AS64500 to fra by country")
    assert answer(port, "10.9.4.0/24")[0] == [FRA]             # the first healthy


def check(path, text):
    path.write_text(text)
    return subprocess.run([SLUICE, "check", "-c", str(path)], capture_output=True, text=True,
                          timeout=10)


def test_location_and_asn_config_errors(tmp_path):
    city, asns = tmp_path / "city.mmdb", tmp_path / "asn.mmdb"
    mmdb_writer.write(str(city), {"10.4.0.0/16": located(52.23, 21.01)}, "sluice-test-City")
    mmdb_writer.write(str(asns), {"10.1.0.0/16": asn(64500)}, "GeoLite2-ASN")
    path = tmp_path / "bad.yaml"
    base = ("listeners:\n  - name: g\n    bind: 127.0.0.1:5300\n    mode: dns\n{dbs}"
            "    records:\n      - name: a.test\n        regions:\n"
            "          - {{name: r, pool: p, addresses: [192.0.2.1], {rule}}}\n"
            "pools:\n  - name: p\n    backends: [{{address: 127.0.0.1:2}}]\n")
    both = f"    geoip: {city}\n    geoip_asn: {asns}\n"
    owner = "region 'r' of record 'a.test' of listener 'g'"
    cases = [
        (both, "location: {latitude: 91, longitude: 8.68}",
         f"10:77: error: {owner}: location.latitude: expected degrees from -90 to 90 (north of "
         "the equator; 50.11 for Frankfurt), got '91'"),
        (both, "location: {latitude: -90.5, longitude: 8.68}", "10:77: error:"),
        (both, "location: {latitude: 50.11, longitude: -180.01}",
         f"10:95: error: {owner}: location.longitude: expected degrees from -180 to 180 (east of "
         "Greenwich; -77.04 for Washington), got '-180.01'"),
        (both, "location: {latitude: 50.11, longitude: 1e3}", "10:95: error:"),
        (both, "location: {latitude: nan, longitude: 8}", "10:77: error:"),
        (both, "location: {latitude: '', longitude: 8}", "10:77: error:"),
        (both, "location: {latitude: 50.11}",
         f"10:66: error: {owner}: missing required key 'location.longitude'"),
        (both, "location: {lat: 50.11, longitude: 8.68}",
         "10:67: error: unknown key 'lat' in location of " + owner),
        (both, "location: [50.11, 8.68]",
         "10:66: error: " + owner + ": location: expected a mapping"),
        ("", "location: {latitude: 50.11, longitude: 8.68}",
         f"8:66: error: {owner}: location: needs the listener's geoip database "
         "(listeners[].geoip), one with locations (a City database)"),
        (both, "asns: [64500, 0]",
         f"10:70: error: {owner}: asns: expected a whole number from 1 to 4294967294, got '0'"),
        (both, "asns: [4294967295]", "10:63: error:"),
        (both, "asns: [AS64500]", "10:63: error:"),
        (both, "asns: [-1]", "10:63: error:"),
        (both, "asns: []", f"10:62: error: {owner}: asns: give 1 to 4096 asns"),
        (f"    geoip: {city}\n", "asns: [64500]",
         f"9:62: error: {owner}: asns: needs the listener's geoip_asn database "
         "(listeners[].geoip_asn)"),
        (f"    geoip_asn: {tmp_path}/none.mmdb\n", "asns: [64500]",
         f"5:16: error: listener 'g': geoip_asn: cannot open '{tmp_path}/none.mmdb'"),
        (f"    geoip_asn: {tmp_path}\n", "asns: [64500]",
         f"5:16: error: listener 'g': geoip_asn: '{tmp_path}' is not a MaxMind database"),
        (f"    geoip_asn: {path}\n", "asns: [64500]", "5:16: error: listener 'g': geoip_asn: cannot open"),
    ]
    for dbs, rule, want in cases:
        r = check(path, base.format(dbs=dbs, rule=rule))
        assert r.returncode == 1 and f"{path}:{want}" in r.stderr, (rule, want, r.stderr)
    # Both, well formed: accepted.
    r = check(path, base.format(dbs=both, rule="asns: [64500, 4294967294], location: "
                                "{latitude: -33.87, longitude: 151.21}"))
    assert r.returncode == 0, r.stdout + r.stderr
    # geoip_asn on a listener that is not dns.
    r = check(path, "listeners:\n  - {name: w, bind: 127.0.0.1:5300, mode: tcp, pool: p, "
              f"geoip_asn: {asns}}}\npools:\n  - name: p\n    backends: [{{address: 127.0.0.1:2}}]\n")
    assert r.returncode == 1 and "geoip_asn" in r.stderr and "dns" in r.stderr, r.stderr
