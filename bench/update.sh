#!/usr/bin/env bash
# Measures the warm /update rate: starts delegated on free loopback ports with
# a fresh SQLite file, runs bench/update against it, stops it.
# Usage: bench/update.sh [-n N] [-c C]
exec "$(dirname "$0")/serve.sh" update "$@"
