#!/usr/bin/env bash
# Starts delegated on free loopback ports with a fresh SQLite file, runs the
# benchmark program bench/PROGRAM against its API (-api URL, then the other
# arguments), and stops it. bench/update.sh and bench/register.sh use it.
# Usage: bench/serve.sh PROGRAM [ARGS…]
set -euo pipefail
program=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$work"' EXIT
cd "$root"
go build -o "$work/delegated" ./cmd/delegated
go build -o "$work/$program" "./bench/$program"
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
"$work/$program" -api "http://127.0.0.1:$api" "$@"
