"""The logs on a socket, as under systemd with StandardOutput=journal (the
default): stdout and stderr are one UNIX stream socket to journald. A
journald that stops reading must not stop sluice: lines it cannot take now
are lost and counted, never waited for, and the socket's shared file status
flags are left alone. Lines that do go out are whole, even where the socket
took only the start of a long one."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from harness import SLUICE, Sluice, free_port, port_open, recv_all, wait_for
from test_core_edges import PausableReader


class JournalSluice(Sluice):
    """sluice with stdout and stderr on one UNIX stream socket, as systemd
    connects them to journald. The socket's send buffer is the smallest the
    kernel allows, so a few lines fill it, and a line of a few KiB goes in
    two pieces (the kernel may take only the first)."""

    def __init__(self, config_text, wait_ports=()):
        fd, self.config = tempfile.mkstemp(prefix="sluice-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(config_text)
        self.name = "sluice"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)   # the minimum
        try:
            self.p = subprocess.Popen([SLUICE, "-c", self.config], stdout=theirs.fileno(),
                                      stderr=theirs.fileno(), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()         # sluice holds the only writer now
        self.pid = self.p.pid
        self.journal = PausableReader(ours)
        wait_for(lambda: "event=started" in self.stderr() or not self.alive(),
                 what="sluice to start")
        assert self.alive(), f"sluice exited at start:\n{self.stderr()}"
        for p in wait_ports:
            wait_for(lambda: port_open(p), what=f"port {p}")

    def stdout(self):
        return self.journal.text().decode(errors="replace")

    stderr = stdout                # one stream, as in the journal

    def stop(self, sig=signal.SIGTERM, timeout=10):
        self.journal.resume()
        rc = self.end(sig, timeout)
        self.journal.t.join(10)    # to the end of what sluice wrote
        self.journal.f.close()
        return rc


def exchange(port, request, timeout=5):
    """One connection: send, half-close, read to the end. None on timeout."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(request)
            c.shutdown(socket.SHUT_WR)
            return recv_all(c)
    except socket.timeout:
        return None


def get(port, path, long=False):
    """A GET; long: with a path, User-Agent and Referer that make its access
    line longer than the kernel puts in one piece on the socket (2240 bytes
    with the smallest send buffer), so that a nearly full socket may take
    only its start."""
    more = f"User-Agent: {'u' * 500}\r\nReferer: {'r' * 500}\r\n" if long else ""
    reply = exchange(port, f"GET {path} HTTP/1.1\r\nHost: t\r\n{more}"
                           "Connection: close\r\n\r\n".encode())
    return reply is not None and reply.startswith(b"HTTP/1.1 200 ")


BAD_PROXY = b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"    # an error-log line each


def dropped(admin):
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read()
    found = dict(re.findall(rb'^sluice_log_lines_dropped_total\{log="(\w+)"\} (\d+)$',
                            metrics, re.M))
    return {k.decode(): int(v) for k, v in found.items()}


# Every line that reaches the journal, whole: an error-log line, an L4
# access line, or an HTTP access line, to its last field (a line cut short
# and run into the next matches none of them).
_TIME = rb'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z'
_FIELDS_TO_END = rb'( [\w.]+=\S*)* end=\w+'
WHOLE_LINE = re.compile(
    _TIME + rb' level=\w+ event=\w+( [\w.]+=("[^"]*"|[^ "]*))*'
    rb'|' + _TIME + rb' tcp l4 127\.0\.0\.1:\d+ \S+ \S+' + _FIELDS_TO_END +
    rb'|127\.0\.0\.1 - - \[[^\]]+\] "GET /(n\d+|after) HTTP/1\.1" 200 \d+ "-" "-"'
    rb' listener=web' + _FIELDS_TO_END +
    rb'|127\.0\.0\.1 - - \[[^\]]+\] "GET /long/a{900,} HTTP/1\.1" 200 \d+ "r{500}" "u{500}"'
    rb' listener=web' + _FIELDS_TO_END)


def test_a_stalled_journal_loses_lines_instead_of_stopping_sluice(procs):
    """Both logs on one socket whose reader stops reading, as a stuck
    journald: HTTP requests (with long access lines among them) and bad
    PROXY headers (one error-log line each) are all still answered by two
    workers, and the lines that could not go are counted in
    sluice_log_lines_dropped_total, for both logs. Once the reader reads
    again, new lines arrive, and every line it got is whole."""
    origin = procs.origin("b1")
    web, l4, admin = free_port(), free_port(), free_port()
    config = (f"workers: 2\n"
              f"admin: {{listen: 127.0.0.1:{admin}}}\n"
              "log: {level: info, access: stdout}\n"
              "listeners:\n"
              f"  - {{name: web, bind: 127.0.0.1:{web}, mode: http, pool: app}}\n"
              f"  - {{name: l4, bind: 127.0.0.1:{l4}, mode: tcp, pool: app,"
              " proxy_protocol: accept}\n"
              "pools:\n"
              f"  - name: app\n    backends: [{{name: b1, address: {origin.address}}}]\n")
    s = JournalSluice(config, wait_ports=[web, l4, admin])
    procs.all.append(s)
    s.journal.pause()

    served = 0
    for i in range(150):           # a few lines fill the socket; keep going well past
        ok = (get(web, f"/n{i}") and get(web, "/long/" + "a" * 1500, long=True) and
              exchange(l4, BAD_PROXY) == b"")
        if not ok:
            break
        served += 1
    assert served == 150, f"only {served} of 150 rounds answered with the journal stalled"
    lost = dropped(admin)
    assert lost.get("access", 0) > 0 and lost.get("error", 0) > 0, lost

    before = s.journal.text().count(b"event=proxy_header_bad")
    s.journal.resume()

    def later_lines_arrive():      # once the reader has made room again
        assert get(web, "/after")
        assert exchange(l4, BAD_PROXY) == b""
        time.sleep(0.1)
        text = s.journal.text()
        return b'"GET /after ' in text and text.endswith(b"\n") and \
            text.count(b"event=proxy_header_bad") > before
    wait_for(later_lines_arrive, timeout=20, interval=0.1, what="later lines in the journal")

    lines = s.journal.text().split(b"\n")
    assert lines.pop() == b""
    torn = [l[:100] + b" ... " + l[-100:] for l in lines if not WHOLE_LINE.fullmatch(l)]
    assert not torn, torn
    assert any(b"GET /long/" in l for l in lines)
