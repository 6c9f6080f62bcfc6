import os
import resource
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Procs  # noqa: E402

# Thousands of concurrent sockets in one test: raise the soft descriptor
# limit for pytest and every process it starts.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and certificates for a.test, *.b.test and client.test signed by
    it (made with the openssl command), for the TLS and HTTP/2 tests."""
    def run(*args):
        subprocess.run(args, check=True, capture_output=True, timeout=30)
    openssl = "/usr/bin/openssl"
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = str(d / "ca.key"), str(d / "ca.pem")
    run(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=sluice test CA")
    out = {"ca": ca, "dir": d}
    for name, san in (("a", "DNS:a.test"), ("b", "DNS:*.b.test"), ("client", "DNS:client.test")):
        key, csr, crt = str(d / f"{name}.key"), str(d / f"{name}.csr"), str(d / f"{name}.pem")
        ext = d / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\n")
        run(openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/O=Example/CN={name}.test")
        run(openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", str(ext))
        out[name] = (crt, key)
    return out
