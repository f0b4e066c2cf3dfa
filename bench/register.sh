#!/usr/bin/env bash
# Measures bcrypt fairness under concurrent registrations (issue 16): starts
# delegated on free loopback ports with a fresh SQLite file and production
# bcrypt settings, runs bench/register against it, stops it.
# Usage: bench/register.sh [-c 50] [-d 20s]
# Pin to two cores as the target says: taskset -c 0,1 bench/register.sh
exec "$(dirname "$0")/serve.sh" register "$@"
