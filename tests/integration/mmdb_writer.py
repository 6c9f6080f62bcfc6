"""Writes a small MaxMind DB (format 2.0) for the GeoIP tests: IPv4 networks,
each with a country and a continent, as GeoLite2-Country has them
(country.iso_code, continent.code), or with any record given as a dict:
a location as GeoLite2-City has it ({"location": {"latitude": 50.11,
"longitude": 8.68}}, doubles), an autonomous system as GeoLite2-ASN has it
({"autonomous_system_number": 64500}, a uint32). No real GeoIP data is
needed or shipped.

The format (https://maxmind.github.io/MaxMind-DB/): a binary search tree
over the address bits (24-bit records here), 16 zero bytes, the data section
(typed, self-describing values), then the metadata after the marker
b"\\xab\\xcd\\xefMaxMind.com". An IPv6 tree is written, with the IPv4
networks under ::/96, which is where readers look IPv4 addresses up.
"""
import ipaddress
import struct
import time

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"

# Data section type numbers.
T_UTF8, T_DOUBLE, T_UINT16, T_UINT32, T_MAP = 2, 3, 5, 6, 7
T_INT32, T_UINT64, T_ARRAY, T_FLOAT = 8, 9, 11, 15


def _control(t, size):
    """The control byte(s) of a value of type t and size (an extended type
    is written as type 0 followed by t - 7)."""
    if size < 29:
        first, extra = size, b""
    elif size < 285:
        first, extra = 29, bytes([size - 29])
    elif size < 65821:
        first, extra = 30, struct.pack(">H", size - 285)
    else:
        first, extra = 31, struct.pack(">I", size - 65821)[1:]
    if t <= 7:
        return bytes([(t << 5) | first]) + extra
    return bytes([first, t - 7]) + extra


def encode(v, kind=None):
    """A Python value in the data section's encoding. kind picks the
    integer type ("uint16", "uint32", "uint64", "int32") or the size of a
    float ("double", the default, or "float"); str, dict and list map to
    utf8_string, map and array."""
    if isinstance(v, float):
        if kind == "float":
            return _control(T_FLOAT, 4) + struct.pack(">f", v)
        return _control(T_DOUBLE, 8) + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        return _control(T_UTF8, len(b)) + b
    if isinstance(v, dict):
        out = _control(T_MAP, len(v))
        for k, x in v.items():
            if isinstance(x, tuple):
                x, k2 = x
                out += encode(k) + encode(x, k2)
            else:
                out += encode(k) + encode(x)
        return out
    if isinstance(v, list):
        return _control(T_ARRAY, len(v)) + b"".join(encode(x) for x in v)
    if isinstance(v, int) and kind == "int32":
        return _control(T_INT32, 4) + struct.pack(">i", v)
    if isinstance(v, int):
        t = {"uint16": T_UINT16, "uint32": T_UINT32, "uint64": T_UINT64}[kind or "uint32"]
        b = v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""
        return _control(t, len(b)) + b
    raise TypeError(type(v))


def write(path, networks, database_type="sluice-test-Country"):
    """networks: {"10.1.0.0/16": ("DE", "EU"), "10.2.0.0/16": {...}, ...},
    none inside another; a (country, continent) pair, or the record as a
    dict for encode()."""
    data = b""
    root = [None, None]      # a node: [left, right]; a child is a node, an int (data offset) or None
    for net, value in networks.items():
        n = ipaddress.ip_network(net)
        offset = len(data)
        if isinstance(value, dict):
            data += encode(value)
        else:
            country, continent = value
            data += encode({"continent": {"code": continent}, "country": {"iso_code": country}})
        bits = [0] * 96 + [int(b) for b in format(int(n.network_address), "032b")]
        depth = 96 + n.prefixlen
        node = root
        for i in range(depth - 1):
            b = bits[i]
            if not isinstance(node[b], list):
                node[b] = [None, None]
            node = node[b]
        node[bits[depth - 1]] = offset

    nodes = []               # breadth first: the root is node 0
    queue = [root]
    while queue:
        node = queue.pop(0)
        nodes.append(node)
        queue += [c for c in node if isinstance(c, list)]
    index = {id(n): i for i, n in enumerate(nodes)}
    count = len(nodes)

    def record(c):
        if isinstance(c, list):
            return index[id(c)]
        if c is None:
            return count                 # "no data here"
        return count + 16 + c            # into the data section

    tree = b"".join(struct.pack(">I", record(n[0]))[1:] + struct.pack(">I", record(n[1]))[1:]
                    for n in nodes)
    meta = encode({
        "binary_format_major_version": (2, "uint16"),
        "binary_format_minor_version": (0, "uint16"),
        "build_epoch": (int(time.time()), "uint64"),
        "database_type": database_type,
        "description": {"en": "sluice test data"},
        "ip_version": (6, "uint16"),
        "languages": ["en"],
        "node_count": (count, "uint32"),
        "record_size": (24, "uint16"),
    })
    with open(path, "wb") as f:
        f.write(tree + b"\0" * 16 + data + METADATA_MARKER + meta)
