#!/usr/bin/env bash
# Convergence benchmark: 1,000 Ingresses and 1,000 Services in a real
# kube-apiserver; the time from an API write to the first request routed by
# the new state (p50/p99 over 50 changes) and from start to ready.
# `make bench-convergence` runs it; the table is in the output.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec test/e2e/run.sh -test.run '^$' -test.bench '^BenchmarkConvergence$' -test.benchtime 1x "$@"
