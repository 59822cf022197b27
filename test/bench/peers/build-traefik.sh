#!/usr/bin/env bash
# Builds Traefik VERSION from its Go module into OUT, for the peers benchmark.
#
#	build-traefik.sh VERSION OUT
#
# `go install github.com/traefik/traefik/v3/cmd/traefik@VERSION` refuses to
# build it: Traefik's go.mod has replace directives (forks of a few
# dependencies), and go install ignores those. So this builds it the way
# Traefik's own repository does: from a small wrapper module that requires
# Traefik and carries the same replace and exclude directives. A directive
# that replaces a module with a folder of Traefik's repository cannot be
# carried over when that folder is a module of its own (the module proxy
# serves it separately, or not at all); then the build is impossible here
# and the last line printed says why. Exit status 3 means "cannot be built
# here", anything else non-zero a failed build.
set -euo pipefail

version="${1:?usage: build-traefik.sh VERSION OUT}"
out="${2:?usage: build-traefik.sh VERSION OUT}"
mod=github.com/traefik/traefik/v3

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

dir="$(cd "$work" && go mod download -json "$mod@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$dir" || ! -f "$dir/go.mod" ]]; then
	echo "traefik $version: the Go module proxy did not serve $mod@$version"
	exit 3
fi

# The replace and exclude directives of Traefik's go.mod, single-line or in
# blocks, with folder replacements ("=> ./x") pointed into the module cache.
directives="$(awk -v dir="$dir" '
	/^(replace|exclude)[[:space:]]*\(/ { block = 1; print; next }
	block && /^\)/                     { block = 0; print; next }
	block                               { gsub(/=> \.\//, "=> " dir "/"); print; next }
	/^(replace|exclude)[[:space:]]/     { gsub(/=> \.\//, "=> " dir "/"); print }
' "$dir/go.mod")"
while read -r target; do
	if [[ ! -f "$target/go.mod" ]]; then
		rel="${target#"$dir"/}"
		echo "traefik $version: its go.mod replaces a module with its folder ./$rel, a separate module that the Go module proxy does not serve"
		exit 3
	fi
done < <(grep -o "=> $dir/[^ ]*" <<<"$directives" | sed 's/^=> //' || true)

cat > "$work/go.mod" <<EOF
module postern.dev/bench/traefik

go $(sed -n 's/^go //p' "$dir/go.mod")

require $mod $version

$directives
EOF

cd "$work"
go get "$mod/cmd/traefik@$version"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" -o "$out.tmp" "$mod/cmd/traefik"
mv "$out.tmp" "$out"
echo "traefik $version: built $out"
