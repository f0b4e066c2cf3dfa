// Package multi tests several `delegated serve` processes on one PostgreSQL
// database: the bundled issuer works each certificate in one instance at a
// time, and another takes over when the holder dies. It needs Pebble,
// unbound, NSD and a PostgreSQL cluster (DELEGATED_TEST_POSTGRES_DSN, which
// .ci/run exports).
package multi
