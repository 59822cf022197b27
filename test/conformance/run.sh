#!/usr/bin/env bash
# The Gateway API's official conformance suite (sigs.k8s.io/gateway-api/conformance
# v1.6.3) against Postern, on the test cluster: `make conformance` runs this; to run
# one test of the suite:
#
#   test/conformance/run.sh -run-test HTTPRouteSimpleSameNamespace
#
# Like the e2e run (test/e2e/run.sh) everything happens inside a network namespace
# of its own: the API server on 192.0.2.1, the Nodes' Pods on 198.51.100.0/24, and
# the Gateways' addresses (--gateway-addresses) on 203.0.113.0/24, made local to
# the namespace with one route. The suite's backends are echo-basic, built from the
# conformance module; the node agent runs it for the suite's Deployments. The
# report is written to test/conformance/reports/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

kube="$(test/kube/build.sh)"
make --no-print-directory build
CGO_ENABLED=0 go build -trimpath -o bin/postern-node ./test/node
# The suite's module is its own (test/conformance/go.mod): echo-basic and the
# test binary are built there.
(cd test/conformance && CGO_ENABLED=0 go build -trimpath -o "$root/bin/echo-basic" sigs.k8s.io/gateway-api/conformance/echo-basic)
(cd test/conformance && go test -c -tags conformance -o "$root/bin/conformance.test" .)
# The suite's DNS backend (coredns) serves UDPRoute tests only; its Pod just has
# to be Ready.
printf '#!/bin/sh\nexec sleep infinity\n' >bin/conformance-placeholder
chmod +x bin/conformance-placeholder
crds="$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard"

command -v ip >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }

ns="postern-conformance-$$"
cleanup() {
	for podns in /run/netns/"$ns"-*; do
		[ -e "$podns" ] || continue
		ip netns pids "${podns##*/}" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "${podns##*/}" 2>/dev/null || true
	done
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip addr add 192.0.2.1/24 dev lo
ip netns exec "$ns" ip route add local 203.0.113.0/24 dev lo

mkdir -p test/conformance/reports
report="$root/test/conformance/reports/gateway-api-v1.6.3.yaml"
version="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo dev)"
ip netns exec "$ns" env \
	POSTERN_CONFORMANCE_BIN="$root/bin/postern" \
	POSTERN_CONFORMANCE_NODE="$root/bin/postern-node" \
	POSTERN_CONFORMANCE_ECHO_BASIC="$root/bin/echo-basic" \
	POSTERN_CONFORMANCE_PLACEHOLDER="$root/bin/conformance-placeholder" \
	POSTERN_CONFORMANCE_KUBE="$kube" \
	POSTERN_CONFORMANCE_CRDS="$crds" \
	POSTERN_CONFORMANCE_REPORT="$report" \
	POSTERN_CONFORMANCE_VERSION="$version" \
	POSTERN_CONFORMANCE_NETNS="$ns" \
	"$root/bin/conformance.test" -test.v -test.timeout 30m -test.run '^TestConformance$' "$@"
