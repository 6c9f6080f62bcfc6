#!/bin/sh
# `make bench` entry point: the HTTP/1.1 benchmark (options in BENCH_HTTP_ARGS),
# the rate-limit benchmark (BENCH_RATE_LIMIT_ARGS), one limit across two
# instances (BENCH_PEERS_ARGS), the TLS one (BENCH_TLS_ARGS),
# the Basic-auth one (BENCH_AUTH_ARGS), the JWT one (BENCH_JWT_ARGS), request
# mirroring (BENCH_MIRROR_ARGS), TLS routed by server name (BENCH_SNI_ARGS),
# the HTTP/2 one (BENCH_HTTP2_ARGS), the
# multi-core scaling one where there are 6 CPUs or more (BENCH_SCALING_ARGS),
# then the L4 benchmark (arguments are passed on, e.g. `bench/run.sh
# --duration 5`), each sluice vs HAProxy vs NGINX. See docs/benchmarks.md.
set -e
cd "$(dirname "$0")/.."
/usr/bin/python3 bench/http.py ${BENCH_HTTP_ARGS:-}
/usr/bin/python3 bench/rate_limit.py ${BENCH_RATE_LIMIT_ARGS:-}
/usr/bin/python3 bench/peers.py ${BENCH_PEERS_ARGS:-}
/usr/bin/python3 bench/tls.py ${BENCH_TLS_ARGS:-}
/usr/bin/python3 bench/auth.py ${BENCH_AUTH_ARGS:-}
/usr/bin/python3 bench/jwt.py ${BENCH_JWT_ARGS:-}
/usr/bin/python3 bench/mirror.py ${BENCH_MIRROR_ARGS:-}
/usr/bin/python3 bench/sni.py ${BENCH_SNI_ARGS:-}
/usr/bin/python3 bench/http2.py ${BENCH_HTTP2_ARGS:-}
if [ "$(nproc)" -ge 6 ]; then
    /usr/bin/python3 bench/scaling.py ${BENCH_SCALING_ARGS:-}
fi
# With BENCH_QUALITY=1, also the balancing-quality (one slow backend), the
# failover and the DNS discovery benchmarks, options in BENCH_BALANCE_ARGS,
# BENCH_FAILOVER_ARGS and BENCH_DISCOVERY_ARGS (inserted above the exec:
# lines after it would never run).
if [ "${BENCH_QUALITY:-0}" = 1 ]; then
    /usr/bin/python3 bench/balance_quality.py ${BENCH_BALANCE_ARGS:-}
    /usr/bin/python3 bench/failover.py ${BENCH_FAILOVER_ARGS:-}
    /usr/bin/python3 bench/discovery.py ${BENCH_DISCOVERY_ARGS:-}
fi
exec /usr/bin/python3 bench/l4.py "$@"
