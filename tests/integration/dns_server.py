"""A small authoritative DNS server for the discovery tests: UDP on a free
loopback port, answers A, AAAA and SRV from a table the test changes while
sluice runs, and can be told to fail (SERVFAIL) or to stay silent.

It speaks just enough of RFC 1035 for that: one question per query, names
without compression in answers, no EDNS. Queries it cannot parse are dropped.
"""
import ipaddress
import socket
import struct
import threading
import time

TYPE_A, TYPE_AAAA, TYPE_SRV = 1, 28, 33
RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN = 0, 2, 3


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _read_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels).lower(), off + 1
        if n & 0xC0:
            raise ValueError("compressed question name")
        labels.append(msg[off + 1:off + 1 + n].decode("ascii"))
        off += 1 + n


class DnsServer:
    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self.lock = threading.Lock()
        self.records = {}        # (name, type) -> list of record values
        self.names = set()       # names that exist (else NXDOMAIN)
        self.mode = "answer"     # answer | servfail | silent
        self.ttl = 5             # of every record in an answer, seconds
        self.queries = 0
        self.query_times = []    # time.monotonic() of each query, for the bench
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def set_a(self, name, addrs):
        self._set(name, TYPE_A, list(addrs))

    def set_aaaa(self, name, addrs):
        self._set(name, TYPE_AAAA, list(addrs))

    def set_srv(self, name, entries):
        """entries: (priority, weight, port, target) tuples."""
        self._set(name, TYPE_SRV, list(entries))

    def _set(self, name, rtype, values):
        with self.lock:
            self.records[(name, rtype)] = values
            self.names.add(name)

    def remove(self, name):
        with self.lock:
            self.names.discard(name)
            for key in [k for k in self.records if k[0] == name]:
                del self.records[key]

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode

    def query_count(self):
        with self.lock:
            return self.queries

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=2)
        self.sock.close()

    def _serve(self):
        while not self.stopping:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self._answer(msg)
            except (ValueError, IndexError, struct.error, UnicodeDecodeError):
                continue
            if reply:
                self.sock.sendto(reply, peer)

    def _answer(self, msg):
        qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
        if flags & 0x8000 or qdcount != 1:
            return None
        name, off = _read_name(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        with self.lock:
            self.queries += 1
            self.query_times.append(time.monotonic())
            mode = self.mode
            known = name in self.names
            values = list(self.records.get((name, qtype), []))
            ttl = self.ttl
        if mode == "silent":
            return None
        rd = flags & 0x0100
        rcode = RCODE_SERVFAIL if mode == "servfail" else (RCODE_NOERROR if known else RCODE_NXDOMAIN)
        answers = b""
        count = 0
        if rcode == RCODE_NOERROR:
            for v in values:
                if qtype == TYPE_A:
                    rdata = ipaddress.IPv4Address(v).packed
                elif qtype == TYPE_AAAA:
                    rdata = ipaddress.IPv6Address(v).packed
                else:
                    prio, weight, port, target = v
                    rdata = struct.pack("!HHH", prio, weight, port) + _encode_name(target)
                answers += _encode_name(name) + struct.pack("!HHIH", qtype, 1, ttl, len(rdata)) + rdata
                count += 1
        # QR, AA, the query's RD; RA clear: an authority, not a recursor.
        rflags = 0x8000 | 0x0400 | rd | rcode
        return struct.pack("!HHHHHH", qid, rflags, 1, count, 0, 0) + question + answers
