// Package visibility holds the multi-instance proofs for delegated on
// PostgreSQL: real `delegated serve` processes built from cmd/delegated,
// three of them on loopback ports, sharing one PostgreSQL cluster that the
// tests start themselves (so they can restart it).
//
//   - TestThreeInstances: 1,000 updates spread over the three instances;
//     afterwards every value is answered by all three.
//   - TestKillAndRestart: updates keep flowing while one instance is killed
//     with SIGKILL and PostgreSQL is restarted; every acknowledged update is
//     then answered by every instance, the restarted one included.
//   - BenchmarkVisibility: latency from an update acknowledged by instance A
//     to instance B answering it, reported as p50/p99 in milliseconds.
//
// Run the benchmark with:
//
//	go test ./bench/visibility -run '^$' -bench Visibility -benchtime 1000x
//
// They need PostgreSQL's server binaries (Debian: apt-get install
// postgresql); without them they skip, or fail when $CI is set.
package visibility
