#!/bin/sh
# Install every Debian package that building, testing and benchmarking sluice need.
# Idempotent: when everything is present it prints nothing and exits 0.
set -e

PKGS="build-essential pkg-config clang libclang-rt-14-dev
libssl-dev libcrypt-dev libnghttp2-dev libfyaml-dev libpcre2-dev libxxhash-dev libc-ares-dev
libsystemd-dev libmaxminddb-dev
python3 python3-pytest python3-h2 python3-websockets python3-grpcio
curl openssl wrk nghttp2-client dnsutils iproute2 procps keepalived liburing-dev
haproxy nginx-core libnginx-mod-stream"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# Services from these packages (nginx, haproxy, keepalived) must not start on
# their own: tests and benchmarks start their own instances (on free loopback
# ports, or in network namespaces for keepalived).
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
