#!/usr/bin/env bash
# The quickstart (`make run`): starts the demo echo backends on the loopback
# addresses that the example EndpointSlices name, then Postern in standalone
# mode on this folder. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."

http_port="${HTTP_PORT:-8080}"
https_port="${HTTPS_PORT:-8443}"
metrics_port="${METRICS_PORT:-10254}"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

./bin/echo --name web-1 --listen 127.0.0.11:9000 & pids+=($!)
./bin/echo --name web-2 --listen 127.0.0.12:9000 & pids+=($!)
./bin/echo --name web-3 --listen 127.0.0.13:9000 & pids+=($!)
./bin/echo --name api --listen 127.0.0.21:9000 & pids+=($!)
./bin/echo --name tenants --listen 127.0.0.31:9000 & pids+=($!)

cat <<MSG

Postern is serving examples/quickstart on http://127.0.0.1:${http_port}. Try, from another terminal:

  # host routing: shop.example.com goes to the web service
  curl -H 'Host: shop.example.com' http://127.0.0.1:${http_port}/
  # path routing: /api on the same host goes to the api service
  curl -H 'Host: shop.example.com' http://127.0.0.1:${http_port}/api/orders
  # wildcard host: any one label under tenants.example.com
  curl -H 'Host: acme.tenants.example.com' http://127.0.0.1:${http_port}/
  # load balancing: round robin over web-1, web-2, web-3
  for i in 1 2 3 4 5 6; do curl -s -H 'Host: shop.example.com' http://127.0.0.1:${http_port}/ | head -1; done
  # streaming passes through unbuffered (server-sent events)
  curl -N -H 'Host: shop.example.com' http://127.0.0.1:${http_port}/stream
  # TLS (a self-signed demo certificate, hence -k): HTTP/2, HSTS, and HTTP redirected with 308
  curl -k --resolve secure.example.com:${https_port}:127.0.0.1 https://secure.example.com:${https_port}/ -I
  curl -i -H 'Host: secure.example.com' http://127.0.0.1:${http_port}/
  # the Gateway API beside the Ingresses (gateway.yaml): a header picks api, the rest is split 90/10
  curl -H 'Host: gateway.example.com' -H 'X-Version: 2' http://127.0.0.1:${http_port}/
  curl -i -H 'Host: gateway.example.com' http://127.0.0.1:${http_port}/old/page   # 301 to /new/page
  # no rule for this host: 404
  curl -i -H 'Host: nothing.example.org' http://127.0.0.1:${http_port}/
  # the live routing table
  curl http://127.0.0.1:${metrics_port}/debug/routes

Edit examples/quickstart/*.yaml while it runs: the change is applied at once.

MSG

./bin/postern --manifests examples/quickstart --http-addr "127.0.0.1:${http_port}" \
	--https-addr "127.0.0.1:${https_port}" --https-redirect-port "${https_port}" --metrics-addr "127.0.0.1:${metrics_port}" --log-format console &
pids+=($!)
wait "${pids[-1]}"
