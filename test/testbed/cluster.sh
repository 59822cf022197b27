#!/usr/bin/env bash
# A whole local Kubernetes cluster for a person: `make cluster` starts it and leaves
# it running, `make cluster-down` stops it. No containers and no VM: the real
# kube-apiserver, etcd, kube-controller-manager and kube-scheduler (built once from
# the pinned k8s.io/kubernetes module, cached), and two Nodes whose Pods the node
# agent (test/node) runs as processes, each Pod in a network namespace of its own.
#
# Everything lives in the network namespace "postern-cluster": the API server on
# 192.0.2.1:6443, node-1's Pods on 198.51.100.0/26 and node-2's on 198.51.100.64/26.
# The shell reaches it through the wrappers in .cluster/bin (kubectl, helm, and
# in-cluster, which runs any command there, e.g. curl):
#
#   make cluster
#   source .cluster/env           # puts .cluster/bin first on PATH
#   kubectl get nodes,pods -A
#   make cluster-down
#
# It needs root (network namespaces). Images map to binaries of this repository:
# ghcr.io/postern-dev/postern:* runs bin/postern, ghcr.io/postern-dev/echo:* runs
# bin/echo; a Pod with any other image waits in ErrImagePull.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
ns=postern-cluster
state="$root/.cluster"

running() { [ -e "/run/netns/$ns" ] && [ -s "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }

down() {
	if [ -s "$state/pid" ]; then
		pid="$(cat "$state/pid")"
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid"
			for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
			kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -f "$state/pid"
	fi
	for podns in /run/netns/"$ns"-*; do
		[ -e "$podns" ] || continue
		ip netns pids "${podns##*/}" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "${podns##*/}" 2>/dev/null || true
	done
	if [ -e "/run/netns/$ns" ]; then
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "$ns"
	fi
}

case "${1:-up}" in
down)
	down
	echo "cluster stopped"
	exit 0
	;;
up) ;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac

if running; then
	echo "the cluster is already running (make cluster-down stops it); source .cluster/env to use it"
	exit 0
fi
down # what a crashed run left

command -v ip >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
kube="$(test/kube/build.sh)"
helm="$(test/chart/helm.sh)"
make --no-print-directory build
CGO_ENABLED=0 go build -trimpath -o bin/postern-node ./test/node
CGO_ENABLED=0 go build -trimpath -o bin/postern-cluster ./test/testbed/cmd/postern-cluster

rm -rf "$state"
mkdir -p "$state/bin"
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip addr add 192.0.2.1/32 dev lo

# Detached from this shell, so it keeps running after make returns.
setsid bash -c 'echo $$ >"$0/pid"; exec ip netns exec "$1" "$2/bin/postern-cluster" \
	--kube-dir "$3" --dir "$0/state" --agent "$2/bin/postern-node" --netns-prefix "$1" \
	--image "*postern-dev/postern=$2/bin/postern" --image "*postern-dev/echo=$2/bin/echo" \
	>"$0/cluster.log" 2>&1' "$state" "$ns" "$root" "$kube" </dev/null &

for _ in $(seq 1 360); do
	[ -e "$state/state/ready" ] && break
	if [ -s "$state/pid" ] && ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
		echo "the cluster did not start:" >&2
		tail -30 "$state/cluster.log" >&2
		down
		exit 1
	fi
	sleep 0.5
done
if [ ! -e "$state/state/ready" ]; then
	echo "the cluster was not ready within 3 minutes:" >&2
	tail -30 "$state/cluster.log" >&2
	down
	exit 1
fi

cat >"$state/bin/kubectl" <<WRAP
#!/bin/sh
exec ip netns exec $ns "$kube/kubectl" --kubeconfig "$state/state/kubeconfig" "\$@"
WRAP
cat >"$state/bin/helm" <<WRAP
#!/bin/sh
export HELM_CACHE_HOME="$state/helm/cache" HELM_CONFIG_HOME="$state/helm/config" HELM_DATA_HOME="$state/helm/data"
exec ip netns exec $ns "$helm" --kubeconfig "$state/state/kubeconfig" "\$@"
WRAP
cat >"$state/bin/in-cluster" <<WRAP
#!/bin/sh
# Runs a command in the cluster's network namespace: in-cluster curl http://198.51.100.2:9000/
exec ip netns exec $ns "\$@"
WRAP
chmod +x "$state/bin/"*
cat >"$state/env" <<ENV
# source this file: kubectl, helm and in-cluster for the local cluster
export PATH="$state/bin:\$PATH"
ENV

# Something to look at: the demo backend (examples/cluster/demo.yaml).
"$state/bin/kubectl" apply -f examples/cluster/demo.yaml >/dev/null
"$state/bin/kubectl" rollout status -n demo deployment/hello --timeout 120s >/dev/null
echo
"$state/bin/kubectl" get nodes,pods -A -o wide
cat <<MSG

The cluster is running: $(head -1 "$state/cluster.log")
  source .cluster/env        # kubectl, helm and in-cluster (runs a command where the cluster is) on PATH
  kubectl get nodes,pods -A
  make cluster-down          # stops it
Logs of every component: .cluster/state/logs/; of the cluster runner: .cluster/cluster.log.
MSG
