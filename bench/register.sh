#!/usr/bin/env bash
# Measures bcrypt fairness under concurrent registrations (issue 16): starts
# delegated on free loopback ports with a fresh SQLite file and production
# bcrypt settings, runs bench/register against it, stops it.
# Usage: bench/register.sh [-c 50] [-d 20s]
# Pin to two cores as the target says: taskset -c 0,1 bench/register.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$work"' EXIT
cd "$root"
go build -o "$work/delegated" ./cmd/delegated
go build -o "$work/register" ./bench/register
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dns=$(port); api=$(port)
cat > "$work/config.toml" <<CFG
[zone]
domain = "auth.example.test"
[dns]
listen = ["127.0.0.1:$dns"]
[api]
listen = ["127.0.0.1:$api"]
[log]
level = "warn"
CFG
"$work/delegated" serve --config "$work/config.toml" & pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$api/health" >/dev/null && break; sleep 0.1; done
"$work/register" -api "http://127.0.0.1:$api" "$@"
