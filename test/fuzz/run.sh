#!/usr/bin/env bash
# Runs every native fuzz target of the module for FUZZTIME each (make fuzz).
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" when -fuzztime runs out while a worker is mid-call
# (golang/go#75804, fixed in Go 1.27): no input failed, none is written.
# Such a run is run again, at most twice. Any other failure, or one that
# wrote a failing input to testdata/fuzz, fails at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-5s}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# spurious reports whether the run logged in $log is the coordinator's
# deadline race and nothing else: that message, and no failing input, no
# test's own failure line ("x_test.go:12: ..."), no panic, and nothing new
# in a testdata/fuzz folder.
spurious() {
	grep -q 'context deadline exceeded' "$log" &&
		! grep -q -E 'Failing input written to|^[[:space:]]+[[:alnum:]_]+\.go:[0-9]+: |panic:' "$log" &&
		[[ -z "$(git status --porcelain -- '*/testdata/fuzz/*' 2>/dev/null)" ]]
}

for pkg in $($GO list ./...); do
	for f in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		for try in 1 2 3; do
			echo "fuzz $pkg $f ($FUZZTIME)"
			if $GO test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 3s "$pkg" >"$log" 2>&1; then
				break
			fi
			if [[ $try -lt 3 ]] && spurious; then
				echo "fuzz: $f stopped on Go's fuzztime deadline race (golang/go#75804), no failing input; running it again"
				continue
			fi
			cat "$log"
			exit 1
		done
	done
done
