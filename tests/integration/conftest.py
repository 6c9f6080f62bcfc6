import resource
import sys
import os

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
