"""Starting, checking and stopping: sluice check, graceful SIGTERM."""
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import SLUICE, free_port, port_open, tcp_config, wait_for


def check(text):
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    r = subprocess.run([SLUICE, "check", "-c", path], capture_output=True, text=True, timeout=10)
    os.unlink(path)
    return r.returncode, r.stdout + r.stderr, path


GOOD = """\
listeners:
  - name: web
    bind: 127.0.0.1:{port}
    mode: tcp
    pool: app
pools:
  - name: app
    backends:
      - {{address: 127.0.0.1:9}}
"""


def test_check_accepts_good_config():
    rc, out, _ = check(GOOD.format(port=free_port()))
    assert rc == 0, out
    assert "ok" in out


def test_check_reports_file_line_col():
    cases = [
        # (config, line:col, words in the message)
        (GOOD.format(port=1).replace("    mode: tcp", "    mode: tcp\n    colour: blue"), "5:5",
         "unknown key"),
        (GOOD.format(port=1).replace("pool: app", "pool: nope"), "5:11", "nope"),
        (GOOD.format(port=1).replace("127.0.0.1:1", "127.0.0.1:notaport"), "3:11", "port"),
        (GOOD.format(port=1) + "drain_timeout: 5x\n", "10:16", "duration"),
        (GOOD.format(port=1).replace("{address: 127.0.0.1:9}", "{address: 127.0.0.1:9, weight: -3}"),
         "9:40", "weight"),
    ]
    for text, pos, words in cases:
        rc, out, path = check(text)
        assert rc == 1, out
        assert f"{path}:{pos}: error:" in out, (pos, out)
        assert words in out, out


def test_check_reports_port_in_use():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    rc, out, path = check(GOOD.format(port=port))
    s.close()
    assert rc == 1
    assert f"{path}:3:11: error:" in out and "in use" in out, out


def test_sluice_refuses_to_start_on_port_in_use():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(GOOD.format(port=port))
    r = subprocess.run([SLUICE, "-c", path], capture_output=True, text=True, timeout=10)
    s.close()
    os.unlink(path)
    assert r.returncode == 1
    assert f"{path}:3:11: error:" in r.stderr and "in use" in r.stderr, r.stderr


def test_sigterm_lets_open_transfer_finish(procs):
    o = procs.origin("b1")
    port = free_port()
    s = procs.sluice(tcp_config(port, [("b1", o.address)]))
    result = {}

    def slow_request():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /delay/1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                d = c.recv(4096)
                if not d:
                    break
                data += d
            result["data"] = data

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.3)
    s.send_signal(signal.SIGTERM)
    # Listeners close at once: new connections are refused...
    wait_for(lambda: not port_open(port), timeout=2, what="listener closed")
    # ...while the open one finishes.
    t.join(10)
    assert result["data"].startswith(b"HTTP/1.1 200") and result["data"].endswith(b"b1\n")
    assert s.p.wait(10) == 0
    assert "event=stopped" in s.stderr()


def test_drain_timeout_closes_what_is_left(procs):
    echo = procs.origin("e1", mode="tcp-echo")
    port = free_port()
    s = procs.sluice(tcp_config(port, [("e1", echo.address)]).replace("drain_timeout: 5s",
                                                                     "drain_timeout: 300ms"))
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"hi")
    assert c.recv(10) == b"hi"
    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)
    assert s.p.wait(5) == 0
    assert time.monotonic() - t0 < 2
    assert c.recv(10) == b""
    c.close()
    assert "end=shutdown" in s.stdout()


def test_sigusr1_reopens_access_log(procs, tmp_path):
    o = procs.origin("b1")
    port = free_port()
    log = tmp_path / "access.log"
    cfg = tcp_config(port, [("b1", o.address)]).replace(
        "access: stdout", f"access: {log}")
    s = procs.sluice(cfg)
    socket.create_connection(("127.0.0.1", port)).close()
    wait_for(lambda: log.exists() and log.read_text().count("\n") == 1, what="first line")
    os.rename(log, tmp_path / "access.log.1")
    s.send_signal(signal.SIGUSR1)
    wait_for(lambda: "event=access_log_reopened" in s.stderr(), what="reopen")
    socket.create_connection(("127.0.0.1", port)).close()
    wait_for(lambda: log.exists() and log.read_text().count("\n") == 1, what="line in new file")
    assert (tmp_path / "access.log.1").read_text().count("\n") == 1
