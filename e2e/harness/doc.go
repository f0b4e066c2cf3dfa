// Package harness starts real third-party components (Pebble,
// pebble-challtestsrv, unbound, NSD, Knot) for end-to-end tests, following
// the project's design note shared/design/e2e-recipe.md.
//
// Every component listens on loopback only, on ports picked at start
// (FreePort), with its config, state and log in its own t.TempDir(), so
// packages that run in parallel on one machine do not collide (a component
// that loses a port race is restarted on fresh ports). Each process is
// started by a Start* function that waits until it answers, records its PID
// and registers a t.Cleanup that stops it by PID (SIGTERM, then SIGKILL of its
// process group) and waits until it has exited. When a test fails, the tail
// of every component's log is written to the test log.
//
// Missing binaries are never skipped silently: RequireTool skips with the
// install command, and fails instead when the CI environment variable is set.
//
// The package holds no mutable package-level state; everything a component
// needs comes from its Options struct, whose zero values are documented
// defaults.
//
// # Environment
//
//   - CI: when set (any value), a missing tool or Pebble module is a test
//     failure rather than a skip.
//   - DELEGATED_E2E_BIN: a directory searched for binaries after PATH
//     (.ci/run puts lego, pebble and pebble-challtestsrv there or on PATH).
//   - PEBBLE_DIR: the source directory of github.com/letsencrypt/pebble/v2 at
//     PebbleVersion, for its test certificates; when unset, the harness looks
//     in $(go env GOMODCACHE).
//   - $(go env GOPATH)/bin, then $HOME/.cache/delegated-e2e/bin (the lego
//     cache of .ci/run), then /usr/sbin and /usr/local/sbin: searched after
//     DELEGATED_E2E_BIN.
//
// .ci/run also exports DELEGATED_TEST_POSTGRES_DSN for store tests; the
// harness itself does not read it.
//
// # Behaviour worth knowing
//
//   - Unbound runs with cache-max-ttl 0 but its clock has whole seconds, so
//     a replaced record (seen with CNAMEs) can still be served until the
//     next second: poll with Eventually rather than asserting at once.
//   - Unbound refuses every name outside its stub zones, and sends queries
//     from 127.0.0.1 only, so nothing ever leaves the machine.
//   - NSD and Knot Reload return only once the new serial is served (and,
//     for NSD, once the server processes holding the old zone are gone).
package harness
