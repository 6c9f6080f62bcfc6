"""keepalived/VRRP in front of two sluice instances, in network namespaces.

Topology (every name carries the test's pid, so parallel runs cannot
collide; every namespace is deleted at teardown):

    ns "a" (node A)  10.201.0.1  --+
    ns "b" (node B)  10.201.0.2  --+-- bridge in ns "lan"
    ns "c" (client)  10.201.0.10 --+
    VIP 10.201.0.100, held by whichever node keepalived makes MASTER

Each node runs its own sluice-origin on its loopback, named after the node,
so an answer says which node served it; a sluice whose http listener binds
VIP:8080 with `freebind: true` and whose admin API is on the node's
loopback; and keepalived (VRRP only, unicast adverts, no multicast) whose
vrrp_script curls sluice's /healthz every second (fall 2, rise 2) and
takes 60 off the node's priority when it fails: A 150 -> 90 < B 100.

The test: examples/ha/keepalived.conf passes keepalived's config test; B's
sluice starts while the VIP is on A (freebind), and one without freebind
cannot and says why; the client is served by A; a planned stop of A's
sluice (SIGTERM, shutdown_delay) moves the VIP to B before A stops
accepting; A's sluice back, A preempts; A's sluice killed (SIGKILL), B
takes over again. Every wait is bounded; the whole runs in about 25 s.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from harness import ORIGIN, ROOT, SLUICE, Proc, wait_for

VIP = "10.201.0.100"
PORT = 8080
NODES = {"a": ("10.201.0.1", 150), "b": ("10.201.0.2", 100)}
CLIENT_IP = "10.201.0.10"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
CURL = shutil.which("curl") or "/usr/bin/curl"
IP = shutil.which("ip") or "/usr/sbin/ip"


def sh(*args, check=True, timeout=10):
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def netns_usable():
    """Why this test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not os.path.exists(IP):
        return "needs ip (iproute2)"
    name = f"sluice-vrrp-probe-{os.getpid()}"
    try:
        r = sh(IP, "netns", "add", name, check=False)
        if r.returncode != 0:
            return f"ip netns is unavailable: {r.stderr.strip()}"
    finally:
        sh(IP, "netns", "del", name, check=False)
    return None


def sluice_config(node, freebind=True, shutdown_delay="0s"):
    return f"""\
workers: 1
drain_timeout: 2s
shutdown_delay: {shutdown_delay}
log: {{level: info, access: off}}
admin: {{listen: 127.0.0.1:9901}}
listeners:
  - name: web
    bind: {VIP}:{PORT}
    freebind: {"true" if freebind else "false"}
    mode: http
    pool: app
pools:
  - name: app
    backends: [{{name: origin-{node}, address: 127.0.0.1:9001}}]
    health_check: {{type: http, path: /health, interval: 500ms, timeout: 400ms,
                   healthy_threshold: 1}}
"""


def keepalived_config(node):
    me, prio = NODES[node]
    peer = NODES["b" if node == "a" else "a"][0]
    return f"""\
global_defs {{
    router_id sluice_{node}
    enable_script_security
    script_user root
}}

vrrp_script chk_sluice {{
    script "{CURL} -fsS -o /dev/null --max-time 1 http://127.0.0.1:9901/healthz"
    interval 1
    timeout 2
    fall 2
    rise 2
    weight -60
}}

vrrp_instance web {{
    state {"MASTER" if node == "a" else "BACKUP"}
    interface eth0
    virtual_router_id 51
    priority {prio}
    advert_int 1
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {VIP}/24 dev eth0
    }}
    track_script {{
        chk_sluice
    }}
}}
"""


class Lab:
    """The namespaces and every process started in them; close() stops the
    processes by PID, then deletes the namespaces."""

    def __init__(self):
        self.tag = f"sv{os.getpid()}"
        self.ns = {n: f"{self.tag}-{n}" for n in ("lan", "a", "b", "c")}
        self.dir = tempfile.mkdtemp(prefix="sluice-vrrp-")
        self.procs = []
        self.keepalived = {}
        self.sluice = {}
        self.killed = []      # sluices killed on purpose: no exit status to check

    def up(self):
        lan = self.ns["lan"]
        for ns in self.ns.values():
            sh(IP, "netns", "add", ns)
            sh(IP, "-n", ns, "link", "set", "lo", "up")
        sh(IP, "-n", lan, "link", "add", "br0", "type", "bridge")
        sh(IP, "-n", lan, "link", "set", "br0", "up")
        for node, addr in (("a", NODES["a"][0]), ("b", NODES["b"][0]), ("c", CLIENT_IP)):
            ns = self.ns[node]
            # Created inside the namespaces: no name is ever seen by the host.
            sh(IP, "-n", lan, "link", "add", f"v{node}", "type", "veth",
               "peer", "name", "eth0", "netns", ns)
            sh(IP, "-n", lan, "link", "set", f"v{node}", "master", "br0")
            sh(IP, "-n", lan, "link", "set", f"v{node}", "up")
            sh(IP, "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh(IP, "-n", ns, "link", "set", "eth0", "up")

    def start(self, ns_key, args, name):
        p = Proc([IP, "netns", "exec", self.ns[ns_key], *args], f"{self.tag}-{name}")
        self.procs.append(p)
        return p

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def origin(self, node):
        p = self.start(node, [ORIGIN, "--listen", "127.0.0.1:9001", "--name", f"node-{node}"],
                       f"origin-{node}")
        wait_for(lambda: "listening" in p.stdout() or not p.alive(), what=f"origin {node}")
        assert p.alive(), p.stderr()
        return p

    def start_sluice(self, node, **conf):
        cfg = self.write(f"sluice-{node}.yaml", sluice_config(node, **conf))
        p = self.start(node, [SLUICE, "-c", cfg], f"sluice-{node}")
        wait_for(lambda: "event=started" in p.stderr() or not p.alive(), timeout=10,
                 what=f"sluice on {node} to start")
        assert p.alive(), f"sluice on {node} exited at start:\n{p.stderr()}"
        self.sluice[node] = p
        return p

    def start_keepalived(self, node):
        cfg = self.write(f"keepalived-{node}.conf", keepalived_config(node))
        run = os.path.join(self.dir, f"run-{node}")
        os.mkdir(run)
        # Foreground, VRRP only, logs on stderr, pid files of its own (no
        # clash with a system keepalived).
        p = self.start(node, [KEEPALIVED, "--dont-fork", "--log-console", "--log-detail",
                              "--no-syslog", "--vrrp", "-f", cfg,
                              "-p", os.path.join(run, "keepalived.pid"),
                              "-r", os.path.join(run, "vrrp.pid")],
                       f"keepalived-{node}")
        self.keepalived[node] = (p, os.path.join(run, "vrrp.pid"))
        return p

    def has_vip(self, node):
        r = sh(IP, "-n", self.ns[node], "-o", "-4", "addr", "show", "dev", "eth0", check=False)
        return f" {VIP}/" in r.stdout

    def get(self, path="/"):
        """One request from the client namespace to the VIP: (ok, body)."""
        r = subprocess.run([IP, "netns", "exec", self.ns["c"], CURL, "-sS", "--max-time", "1",
                            f"http://{VIP}:{PORT}{path}"],
                           capture_output=True, text=True, timeout=5)
        return r.returncode == 0, r.stdout.strip()

    def served_by(self, node):
        ok, body = self.get()
        return ok and body == f"node-{node}"

    def kill_sluice(self, node):
        p = self.sluice[node]
        self.killed.append(p)
        p.stop(signal.SIGKILL)

    def close(self):
        """Stops everything, deletes the namespaces; then fails if a sluice
        did not exit 0 on SIGTERM or a sanitizer reported anything."""
        problems = []
        for p in reversed(self.procs):
            try:
                rc = p.stop(signal.SIGTERM, timeout=10)
            except Exception as e:
                problems.append(f"{p.name}: {e}")
                continue
            if "-sluice-" not in p.name:
                continue
            err = p.stderr()
            if "Sanitizer" in err or "runtime error:" in err:
                problems.append(f"sanitizer report from {p.name}:\n{err[-4000:]}")
            elif rc not in (0, None) and p not in self.killed:
                problems.append(f"{p.name} exited with {rc}:\n{err[-2000:]}")
        # keepalived stops its VRRP child on SIGTERM; if the parent had to be
        # killed, the child is stopped here by its pid file.
        for _, vrrp_pid in self.keepalived.values():
            try:
                with open(vrrp_pid) as f:
                    pid = int(f.read().strip())
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"keepalived" in f.read():
                        os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        for ns in self.ns.values():
            sh(IP, "netns", "del", ns, check=False)
        if problems:
            raise AssertionError("\n".join(problems))
        for p in self.procs:
            shutil.rmtree(p.dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        out = []
        for p in self.procs:
            out.append(f"--- {p.name} stderr ---\n{p.stderr()[-3000:]}")
        return "\n".join(out)


@pytest.fixture
def lab():
    why = netns_usable()
    if why:
        pytest.skip(why)
    if not os.path.exists(KEEPALIVED):
        pytest.fail("keepalived is not installed (scripts/deps.sh installs it)")
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.close()


def switch_to(lab, node, timeout=15.0):
    """Requests from the client, one after another, until one is served via
    NODE. Returns (seconds, requests that failed, requests served)."""
    t0 = time.monotonic()
    failed = served = 0
    while time.monotonic() - t0 < timeout:
        ok, body = lab.get()
        if not ok:
            failed += 1
        else:
            served += 1
            if body == f"node-{node}":
                return time.monotonic() - t0, failed, served
        time.sleep(0.05)
    raise AssertionError(f"no request served via node {node} within {timeout}s "
                         f"({failed} failed, {served} served elsewhere)\n{lab.logs()}")


SHUTDOWN_DELAY = 10     # seconds; longer than keepalived needs to move the VIP


def test_vip_fails_over_and_back(lab):
    t0 = time.monotonic()
    for node in ("a", "b"):
        lab.origin(node)

    # The example beside the docs is a config keepalived accepts (on a host
    # with an eth0, as node A's namespace is).
    example = os.path.join(ROOT, "examples", "ha", "keepalived.conf")
    r = sh(IP, "netns", "exec", lab.ns["a"], KEEPALIVED, "--config-test", "-f", example,
           check=False)
    assert r.returncode == 0, r.stderr

    # Node A first: sluice on the VIP it does not have yet, then keepalived,
    # which makes A MASTER once the health script has passed.
    lab.start_sluice("a", shutdown_delay=f"{SHUTDOWN_DELAY}s")
    lab.start_keepalived("a")
    try:
        wait_for(lambda: lab.has_vip("a"), timeout=10, interval=0.1, what="the VIP on node A")
        wait_for(lambda: lab.served_by("a"), timeout=5, interval=0.1,
                 what="the client served via node A")
    except AssertionError:
        raise AssertionError(lab.logs())

    # Node B while the VIP is on A: without freebind, sluice cannot bind the
    # VIP and says what to set; with it, it starts and listens on the VIP.
    assert not lab.has_vip("b")
    cfg = lab.write("nofreebind.yaml", sluice_config("b", freebind=False))
    r = sh(IP, "netns", "exec", lab.ns["b"], SLUICE, "-c", cfg, check=False)
    assert r.returncode == 1, r.stderr
    assert (f"listener 'web': cannot bind {VIP}:{PORT}: Cannot assign requested address "
            "(set freebind: true to listen on an address this host does not have yet, "
            "e.g. a keepalived VIP)") in r.stderr, r.stderr
    lab.start_sluice("b")
    assert not lab.has_vip("b")
    ss = sh(IP, "netns", "exec", lab.ns["b"], "ss", "-Htln", "src", f"{VIP}:{PORT}")
    assert f"{VIP}:{PORT}" in ss.stdout, ss.stdout
    lab.start_keepalived("b")

    # B is BACKUP: A keeps the VIP and keeps serving.
    time.sleep(2.5)
    assert lab.has_vip("a") and not lab.has_vip("b"), lab.logs()
    for _ in range(5):
        assert lab.served_by("a"), lab.get()

    # A planned stop: SIGTERM to A's sluice. /healthz answers 503 at once
    # while the listener stays open for shutdown_delay; 2 failed checks take
    # A to priority 90 < 100 and B takes the VIP, before A stops accepting.
    a = lab.sluice["a"]
    a.send_signal(signal.SIGTERM)
    took, failed, served = switch_to(lab, "b")
    assert a.alive(), f"A's sluice exited before the VIP moved ({took:.1f}s)"
    assert lab.has_vip("b")
    wait_for(lambda: not lab.has_vip("a"), timeout=5, interval=0.1, what="node A to drop the VIP")
    print(f"planned: VIP on B after {took:.1f}s, {failed} failed, {served} served by A meanwhile")
    # Requests go one at a time and the client's ARP entry for the VIP
    # changes once: at most the request in flight at that instant can fail.
    assert failed <= 1, f"{failed} requests failed during a planned failover"
    # Then A closes its listener, drains and exits 0; B serves on.
    wait_for(lambda: not a.alive(), timeout=SHUTDOWN_DELAY + 10, what="A's sluice to exit")
    assert a.p.returncode == 0, a.stderr()
    for _ in range(5):
        assert lab.served_by("b"), lab.get()

    # A's sluice back: 2 passing checks, priority 150 again, A preempts.
    lab.start_sluice("a")
    took, failed, served = switch_to(lab, "a")
    wait_for(lambda: not lab.has_vip("b"), timeout=5, interval=0.1, what="node B to drop the VIP")
    print(f"preempt: VIP on A after {took:.1f}s, {failed} failed")
    assert failed <= 1, f"{failed} requests failed while A took the VIP back"

    # A crash: SIGKILL to A's sluice. The checks fail, B takes over.
    lab.kill_sluice("a")
    took, failed, served = switch_to(lab, "b")
    assert lab.has_vip("b")
    print(f"crash: VIP on B after {took:.1f}s, {failed} failed; whole test "
          f"{time.monotonic() - t0:.1f}s")
