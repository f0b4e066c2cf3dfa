#!/bin/sh
# bench/issue: seconds from `delegated issue` to deployed files for
# example.test + *.example.test with Pebble, delegation in place, against
# lego's high-level client on the same stack. Needs pebble, unbound, nsd
# (see e2e/harness). Usage: bench/issue/run.sh [RUNS]   (default 5)
set -eu
runs=${1:-5}
cd "$(dirname "$0")/../.."
go test -run '^$' -bench 'BenchmarkDelegatedIssue|BenchmarkPlainLego' -benchtime "${runs}x" -count 1 -v ./bench/issue/ 2>&1 |
	grep -E 's/issue|^\s+issue_test.go:[0-9]+: (delegated issue|plain lego)|^(ok|FAIL|---)'
