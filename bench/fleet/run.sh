#!/bin/sh
# bench/fleet: the issuer at fleet scale (see fleet_test.go and README):
# FLEET_CERTS certificates via `delegated issue --batch`, FLEET_DELEGATED of
# them delegated after creation, FLEET_DEAD whose name servers never answer,
# with delegation_recheck = FLEET_RECHECK; run without and with the dead
# name servers. Needs pebble, unbound, nsd (see e2e/harness).
# Usage: bench/fleet/run.sh   (defaults: 10000 1000 500 30s)
set -eu
cd "$(dirname "$0")/../.."
export FLEET_CERTS="${FLEET_CERTS:-10000}" FLEET_DELEGATED="${FLEET_DELEGATED:-1000}"
export FLEET_DEAD="${FLEET_DEAD:-500}" FLEET_RECHECK="${FLEET_RECHECK:-30s}"
go test -run '^TestFleet$' -count 1 -timeout 60m -v ./bench/fleet/ 2>&1 |
	grep -E 'fleet_test.go:[0-9]+:|^(ok|FAIL|---|PASS)'
