#!/usr/bin/env bash
# Checks `make cluster` as the README tells a person to use it: up, `source
# .cluster/env`, `kubectl get nodes,pods -A` shows both Nodes Ready and the demo Pods
# Running, a request to a Pod answers through in-cluster, `kubectl logs` works, and
# `make cluster-down` leaves no network namespace behind. Skipped when a cluster of
# make cluster is already running (it is someone's).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -e /run/netns/postern-cluster ]; then
	echo "cluster-check: skipped, a cluster of make cluster is running"
	exit 0
fi
trap './test/testbed/cluster.sh down >/dev/null' EXIT
./test/testbed/cluster.sh up >/dev/null
# shellcheck source=/dev/null
source .cluster/env
out="$(kubectl get nodes,pods -A)"
ready="$(grep -cE '^node/node-[12] +Ready ' <<<"$out" || true)"
running="$(grep -cE '^demo +pod/hello-[a-z0-9]+-[a-z0-9]+ +1/1 +Running ' <<<"$out" || true)"
if [ "$ready" != 2 ] || [ "$running" != 2 ]; then
	echo "cluster-check: want 2 Nodes Ready and 2 demo Pods Running, got:" >&2
	echo "$out" >&2
	exit 1
fi
ip="$(kubectl get pods -n demo -o jsonpath='{.items[0].status.podIP}')"
body="$(in-cluster curl -s --max-time 5 "http://$ip:9000/")"
grep -q '^backend: hello-' <<<"$body" || { echo "cluster-check: the demo Pod at $ip answered: $body" >&2; exit 1; }
kubectl logs -n demo deployment/hello >/dev/null 2>&1
./test/testbed/cluster.sh down >/dev/null
trap - EXIT
if ls /run/netns/ | grep -q '^postern-cluster'; then
	echo "cluster-check: network namespaces left: $(ls /run/netns)" >&2
	exit 1
fi
echo "cluster-check: make cluster works (2 Nodes Ready, demo Pods Running, cluster-down clean)"
