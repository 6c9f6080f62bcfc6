#!/bin/sh
# make demo: three sluice-origin backends (HTTP) and two UDP echo backends,
# sluice in front with examples/demo.yaml. Ctrl-C stops everything started here.
set -e
cd "$(dirname "$0")/.."
pids=""
cleanup() {
    trap - INT TERM EXIT
    # After a reload the serving sluice is a process the first one started:
    # ask it for its pid.
    cur=$(./sluice ctl --admin 127.0.0.1:19901 --json status 2>/dev/null |
          sed -n 's/^{"version":"[^"]*","pid":\([0-9]*\).*/\1/p')
    for p in $pids $cur; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo: stopped"
}
trap cleanup INT TERM EXIT

for i in 1 2 3; do
    ./sluice-origin --listen 127.0.0.1:1900$i --name b$i >/dev/null &
    pids="$pids $!"
done
for i in 1 2; do
    ./sluice-origin --mode udp-echo --udp-tag --listen 127.0.0.1:1910$i --name u$i >/dev/null &
    pids="$pids $!"
done
./sluice check -c examples/demo.yaml
./sluice -c examples/demo.yaml &
pids="$pids $!"
sleep 0.5
cat <<MSG

sluice is running in front of three origins (b1, b2, b3). Try:

  curl http://127.0.0.1:18000/                 # HTTP, balanced per request: b1, b2, b3
  curl http://127.0.0.1:18000/ping             # answered by sluice itself
  h2load -n 3000 -c 3 -m 10 http://127.0.0.1:18000/   # HTTP/2: 30 streams at a time
  curl -H 'x-backend: b3' http://127.0.0.1:18000/   # routed on a header
  for i in \$(seq 20); do curl -s http://127.0.0.1:18000/canary/; done | sort | uniq -c
  http://127.0.0.1:19901/  (in a browser)     # the live dashboard
  ./sluice ctl --admin 127.0.0.1:19901 status  # the same from a shell
  ./sluice ctl --admin 127.0.0.1:19901 drain web/b1   # then curl again: no b1
  ./sluice ctl --admin 127.0.0.1:19901 reload  # edit examples/demo.yaml first: a new process takes over
  curl -s http://127.0.0.1:19901/metrics | grep ^sluice_requests_total
  curl http://127.0.0.1:18080/                 # TCP, balanced per connection
  curl http://127.0.0.1:18080/delay/500        # a slow request
  curl -s http://127.0.0.1:18080/bytes/100000000 | wc -c
  printf hello | /usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(sys.stdin.buffer.read(),("127.0.0.1",18053)); print(s.recv(100))'

Stop a backend (kill its pid) and watch sluice's log mark it DOWN within
2 seconds, while curl keeps getting answers. Ctrl-C stops everything.

MSG
wait
