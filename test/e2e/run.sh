#!/usr/bin/env bash
# End-to-end tests: postern against a real kube-apiserver and etcd, with real
# HTTP requests through it. `make e2e` runs this; to run one test:
#
#   test/e2e/run.sh -test.run 'TestRouting'
#
# The fault scenarios (fault_test.go, and TestAPIServerOutage) each report
# one line of counts; the script prints them as a Markdown table at the end.
# Set POSTERN_E2E_REPORT to a file to keep that table's rows.
#
# The API server refuses loopback addresses in EndpointSlices, so the whole
# run happens inside a network namespace of its own, with TEST-NET-1
# (192.0.2.0/24) on that namespace's loopback for the API server and the
# backends tests start themselves. The cluster's two Nodes (test/testbed,
# test/node) add a bridge each there, with TEST-NET-2 (198.51.100.0/24)
# addresses for their Pods, each Pod in a namespace of its own hanging off its
# Node's bridge. Nothing can leave: the run's namespace has no other interface.
# Binaries are built outside it first (the namespace cannot reach the module
# proxy).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

kube="$(test/kube/build.sh)"
# helm, for the chart tests (chart_test.go); built once, cached like the API server.
helm="$(test/chart/helm.sh)"
make --no-print-directory build
# The node agent, the kubelet of the test cluster's Nodes.
CGO_ENABLED=0 go build -trimpath -o bin/postern-node ./test/node
go test -c -tags e2e -race -o bin/e2e.test ./test/e2e

# iproute2 for the network namespace; Debian's pebble (Let's Encrypt's test
# ACME server) and its challenge test server for the ACME tests.
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v pebble >/dev/null || missing+=(pebble)
command -v pebble-challtestsrv >/dev/null || missing+=(golang-github-letsencrypt-challtestsrv-dev)
# curl and openssl, for the walkthrough's commands (walkthrough_test.go).
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# kubectl is built with the API server, at its version.
kubectl="$kube/kubectl"
# The Gateway API's standard CRDs, from the module go.mod pins (gateway_test.go).
gateway_crds="$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard"

ns="postern-e2e-$$"
report="${POSTERN_E2E_REPORT:-}"
keep_report=1
if [ -z "$report" ]; then
	report="$(mktemp)"
	keep_report=0
fi
cleanup() {
	# The Pods' namespaces (named $ns-<node>-<pod uid> by the node agents), then ours.
	for podns in /run/netns/"$ns"-*; do
		[ -e "$podns" ] || continue
		ip netns pids "${podns##*/}" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "${podns##*/}" 2>/dev/null || true
	done
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	if [ "$keep_report" = 0 ]; then rm -f "$report"; fi
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
# A /24 on lo makes every 192.0.2.x local to the namespace.
ip netns exec "$ns" ip addr add 192.0.2.1/24 dev lo

rc=0
ip netns exec "$ns" env \
	POSTERN_E2E_REPORT="$report" \
	POSTERN_E2E_BIN="$root/bin/postern" \
	POSTERN_E2E_ECHO="$root/bin/echo" \
	POSTERN_E2E_NODE="$root/bin/postern-node" \
	POSTERN_E2E_NETNS="$ns" \
	POSTERN_E2E_KUBE="$kube" \
	POSTERN_E2E_KUBECTL="$kubectl" \
	POSTERN_E2E_HELM="$helm" \
	POSTERN_E2E_CHART="$root/charts/postern" \
	POSTERN_E2E_GATEWAY_CRDS="$gateway_crds" \
	"$root/bin/e2e.test" -test.v -test.timeout 30m "$@" || rc=$?

if [ -s "$report" ]; then
	echo
	echo "| fault scenario | sent | ok | failed | refused | p50 | p99 | notes |"
	echo "|---|---|---|---|---|---|---|---|"
	cat "$report"
fi
exit "$rc"
