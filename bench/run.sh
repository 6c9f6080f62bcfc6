#!/bin/sh
# `make bench` entry point: the HTTP/1.1 benchmark (options in BENCH_HTTP_ARGS),
# then the L4 benchmark (arguments are passed on, e.g. `bench/run.sh
# --duration 5`), each sluice vs HAProxy vs NGINX. See docs/benchmarks.md.
set -e
cd "$(dirname "$0")/.."
/usr/bin/python3 bench/http.py ${BENCH_HTTP_ARGS:-}
exec /usr/bin/python3 bench/l4.py "$@"
