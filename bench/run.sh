#!/bin/sh
# `make bench` entry point. For now it runs the L4 benchmark (sluice vs HAProxy
# vs NGINX); arguments are passed on, e.g. `bench/run.sh --duration 5`.
# See docs/benchmarks.md.
set -e
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/l4.py "$@"
