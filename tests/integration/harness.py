"""Integration-test harness: start the real sluice binary and real origins
on free loopback ports, talk to them with real clients, stop them by PID.

Every process a test starts is registered with a `Procs` object (the `procs`
fixture) and stopped at teardown, whether the test passed or not.
"""
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "sluice"))
ORIGIN = os.environ.get("ORIGIN_BIN", os.path.join(ROOT, "sluice-origin"))


def _test_port_range():
    """Where free_port() draws from: the 12,000 ports just below the
    kernel's ephemeral range. A port the kernel picks by itself (a bind to
    port 0, the local end of an outgoing connection) is never one of them,
    so none can take a port between free_port() and the bind it was for
    (that race once failed an ASan run: "cannot bind ...: Address already
    in use")."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(1024, low - 12000), max(low, 2048)


_PORTS = _test_port_range()
_given = set()     # handed out in this run: never twice


def free_port():
    """A port that is free for both TCP and UDP right now, outside the
    ephemeral range and not handed out before in this run."""
    for _ in range(1000):
        port = random.randrange(*_PORTS)
        if port in _given:
            continue
        try:
            for proto in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, proto) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        _given.add(port)
        return port
    raise RuntimeError("no free port")


def wait_for(pred, timeout=5.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_running(pid):
    """True while pid runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_pid(pid, sig=signal.SIGTERM, timeout=10):
    """Stop a process our sluice started (a reload's new process) by PID:
    only if it is still a sluice, since the PID may have been reused."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"sluice" not in f.read():
                return
        os.kill(pid, sig)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_running(pid):
        os.kill(pid, signal.SIGKILL)


class WebSocketEcho:
    """A WebSocket echo origin (python3-websockets) on a free port, served
    by a thread of the test, over TLS with an ssl context; more options go
    to websockets.serve. It records each handshake's path and headers in
    handshakes; stop() ends it."""

    def __init__(self, websockets, ssl=None, **serve_options):
        import asyncio
        import threading
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.handshakes = []
        ready = threading.Event()
        self._stop = {}

        async def echo(ws, *args):
            self.handshakes.append((ws.path, ws.request_headers))
            try:
                async for msg in ws:
                    await ws.send(msg)
            except websockets.exceptions.ConnectionClosed:
                pass

        async def main():
            loop = asyncio.get_running_loop()
            self._stop["future"] = loop.create_future()
            self._stop["loop"] = loop
            async with websockets.serve(echo, "127.0.0.1", self.port, ssl=ssl, **serve_options):
                ready.set()
                await self._stop["future"]

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self._thread.start()
        assert ready.wait(5), "the WebSocket origin did not start"

    def stop(self):
        self._stop["loop"].call_soon_threadsafe(self._stop["future"].set_result, None)
        self._thread.join(5)


class AcceptLoop:
    """A listening TCP socket on a free loopback port whose accepted
    connections go to on_conn(sock), called on the loop's own thread;
    stop() closes the socket and every connection accepted."""

    def __init__(self, on_conn):
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.conns = []
        self._on_conn = on_conn
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self._on_conn(c)

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Proc:
    """A started process whose output is captured to files we can read."""

    def __init__(self, args, name, env=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"sluice-{name}-")
        self.out_path = os.path.join(self.dir, "stdout")
        self.err_path = os.path.join(self.dir, "stderr")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(args, stdout=self._out, stderr=self._err,
                                  stdin=subprocess.DEVNULL, env=env)
        self.pid = self.p.pid

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def end(self, sig=signal.SIGTERM, timeout=10):
        """Signal by PID and wait (SIGKILL after timeout); the exit status."""
        if self.alive():
            os.kill(self.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait()
        return self.p.returncode

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stop by PID; returns the exit status."""
        rc = self.end(sig, timeout)
        self._out.close()
        self._err.close()
        return rc


class Origin(Proc):
    def __init__(self, name, mode="http", extra=(), port=0, host="127.0.0.1"):
        self.origin_name = name
        args = [ORIGIN, "--listen", f"{host}:{port}", "--name", name, "--mode", mode, *extra]
        super().__init__(args, f"origin-{name}")
        try:
            m = wait_for(lambda: re.search(r"listening (?:[\d.]+|\[[0-9a-f:]+\]):(\d+)",
                                           self.stdout()) or not self.alive(),
                         what=f"origin {name} to listen")
        except AssertionError:
            self.stop(signal.SIGKILL)      # not in any Procs yet: nobody else would
            raise
        if not self.alive():
            raise OSError(f"origin {name} exited: {self.stderr().strip()}")
        self.port = int(m.group(1))
        self.address = f"{host}:{self.port}"


class Sluice(Proc):
    def __init__(self, config_text, wait_ports=(), env=None):
        fd, self.config = tempfile.mkstemp(prefix="sluice-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(config_text)
        super().__init__([SLUICE, "-c", self.config], "sluice", env=env)
        wait_for(lambda: "event=started" in self.stderr() or not self.alive(),
                 what="sluice to start")
        assert self.alive(), f"sluice exited at start:\n{self.stderr()}"
        for p in wait_ports:
            wait_for(lambda: port_open(p), what=f"port {p}")

    def log_lines(self, event):
        return [l for l in self.stderr().splitlines() if f"event={event}" in l]

    def reload_pids(self):
        """New processes started by reloads (they log to the same stderr)."""
        return [int(p) for p in re.findall(r"event=reload_started new_pid=(\d+)", self.stderr())]

    def reload(self, timeout=20):
        """SIGHUP, then wait for the handover; returns the new pid."""
        def failures():
            return len(self.log_lines("reload_failed")) + len(self.log_lines("reload_rejected"))
        n, f = len(self.log_lines("reload_handover")), failures()
        os.kill(self.serving_pid(), signal.SIGHUP)
        wait_for(lambda: len(self.log_lines("reload_handover")) > n or failures() > f,
                 timeout=timeout, what="reload handover")
        lines = self.log_lines("reload_handover")
        assert len(lines) > n, self.stderr()[-3000:]
        return int(re.search(r"new_pid=(\d+)", lines[-1]).group(1))

    def serving_pid(self):
        """The process serving now: the newest one that took over."""
        pids = [int(p) for p in re.findall(r"event=reload_handover new_pid=(\d+)", self.stderr())]
        return pids[-1] if pids else self.pid

    def stop(self, sig=signal.SIGTERM, timeout=10):
        rc = super().stop(sig, timeout)
        for pid in self.reload_pids():
            stop_pid(pid, sig, timeout)
        return rc


class Procs:
    """Everything a test started; stopped at teardown."""

    def __init__(self):
        self.all = []

    def origin(self, name, mode="http", extra=(), port=0, host="127.0.0.1"):
        o = Origin(name, mode, extra, port, host)
        self.all.append(o)
        return o

    def sluice(self, config_text, wait_ports=(), env=None):
        s = Sluice(config_text, wait_ports, env)
        self.all.append(s)
        return s

    def stop_all(self):
        """Stop everything; then fail the test if sluice did not exit
        cleanly or a sanitizer reported anything (leaks included)."""
        problems = []
        for p in reversed(self.all):
            rc = p.stop(signal.SIGKILL if isinstance(p, Origin) else signal.SIGTERM)
            if isinstance(p, Sluice):
                err = p.stderr()
                if "Sanitizer" in err or "runtime error:" in err:
                    problems.append(f"sanitizer report from sluice:\n{err[-4000:]}")
                elif rc not in (0, None) and not getattr(p, "expect_failure", False):
                    problems.append(f"sluice exited with {rc}:\n{err[-2000:]}")
        if problems:
            raise AssertionError("\n".join(problems))


def tcp_config(port, backends, balance="round_robin", health=None, extra_listener="",
               extra_pool="", workers=1, top=""):
    """A one-listener, one-pool tcp config. backends: list of (name, address)."""
    lines = [f"workers: {workers}", "drain_timeout: 5s", top,
             "log: {level: debug, access: stdout}",
             "listeners:",
             "  - name: l4",
             f"    bind: 127.0.0.1:{port}",
             "    mode: tcp",
             "    pool: app",
             extra_listener,
             "pools:",
             "  - name: app",
             f"    balance: {balance}",
             "    timeouts: {connect: 1s}",
             extra_pool,
             "    backends:"]
    for name, addr in backends:
        lines.append(f"      - {{name: {name}, address: {addr}}}")
    if health:
        lines.append(f"    health_check: {health}")
    return "\n".join(l for l in lines if l != "") + "\n"


def recv_all(s):
    """Everything a socket (plain or TLS) gives until the peer closes."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


async def websocket_echo_roundtrip(websockets, uri, **connect):
    """20 small messages and one of 500 KB through an echo origin."""
    async with websockets.connect(uri, **connect) as ws:
        for i in range(20):
            await ws.send(f"hello {i}")
            assert await ws.recv() == f"hello {i}"
        big = os.urandom(500 * 1024)
        await ws.send(big)
        assert await ws.recv() == big


def read_request_body(h):
    """The body of the request an http.server handler h is reading, of
    either framing: Content-Length, or chunked (its trailers skipped)."""
    n = int(h.headers.get("Content-Length", 0) or 0)
    body = h.rfile.read(n) if n else b""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        while True:
            size = int(h.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += h.rfile.read(size)
            h.rfile.readline()
    return body


def http_get(port, path="/", timeout=5.0):
    """One HTTP/1.1 GET on a fresh connection; returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body
