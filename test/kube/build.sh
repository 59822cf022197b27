#!/usr/bin/env bash
# Builds the real Kubernetes control plane the end-to-end tests and `make cluster` run
# (kube-apiserver, kube-controller-manager, kube-scheduler, etcd) and kubectl, once, into
# a cache folder keyed by version. Later runs reuse the binaries.
# Usage: test/kube/build.sh  (prints the folder holding the binaries)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
k8s_version="v1.37.2"
etcd_version="v3.7.3"
cache="${POSTERN_CACHE:-$HOME/.cache/postern}"
out="$cache/kube-$k8s_version-etcd-$etcd_version"
mkdir -p "$out"

cd "$here"
# The control plane's components, each with the version stamp a release has. The API
# server is the long one cold (10-15 minutes); the others take a few more.
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
pkg=k8s.io/component-base/version
for component in kube-apiserver kube-controller-manager kube-scheduler; do
	if [ ! -x "$out/$component" ]; then
		echo "building $component $k8s_version into $out (once)" >&2
		CGO_ENABLED=0 go build -trimpath -o "$out/$component.tmp" \
			-ldflags "-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
			"k8s.io/kubernetes/cmd/$component"
		mv "$out/$component.tmp" "$out/$component"
	fi
done
if [ ! -x "$out/kubectl" ]; then
	echo "building kubectl $k8s_version into $out" >&2
	CGO_ENABLED=0 go build -trimpath -o "$out/kubectl.tmp" \
		-ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitVersion=$k8s_version" \
		k8s.io/kubernetes/cmd/kubectl
	mv "$out/kubectl.tmp" "$out/kubectl"
fi
if [ ! -x "$out/etcd" ]; then
	echo "building etcd $etcd_version into $out" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" ./etcd
	mv "$out/etcd.tmp" "$out/etcd"
fi
echo "$out"
