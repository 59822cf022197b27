#!/usr/bin/env bash
# Builds helm from its Go module, once, into a cache folder keyed by version
# (about 10 minutes cold on 2 cores; seconds when the Go build cache is warm).
# Later runs reuse the binary.
# Usage: test/chart/helm.sh  (prints the path of the helm binary)
set -euo pipefail

helm_version="v3.22.0"
cache="${POSTERN_CACHE:-$HOME/.cache/postern}"
out="$cache/helm-$helm_version"
bin="$out/helm"

if [ ! -x "$bin" ]; then
	echo "building helm $helm_version into $out (about 10 minutes cold, once)" >&2
	mkdir -p "$out"
	# The same -X stamps as helm's own Makefile: its version, and the
	# Kubernetes version that `helm template` and `helm lint` assume
	# (.Capabilities.KubeVersion) when no cluster is asked, derived like
	# there from the client-go helm is built with (v0.37.x -> 1.37).
	gomod="$(go mod download -json "helm.sh/helm/v3@$helm_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
	clientgo="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")"
	minor="$(echo "$clientgo" | cut -d. -f2)"
	if [ -z "$minor" ]; then
		echo "cannot find the client-go version in $gomod" >&2
		exit 1
	fi
	ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
	ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
	done
	tmp="$(mktemp -d "$out/gobin.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$helm_version"
	mv "$tmp/helm" "$bin"
fi
echo "$bin"
