// Package clients is the real-client suite of issue 5: it proves that the
// ACME clients acme-dns users already run work against delegated with
// nothing changed but the server URL.
//
// The tests (clients_test.go and friends) start delegated as a real process
// next to Pebble, pebble-challtestsrv (the customer zone example.test) and
// unbound (the resolver Pebble and the clients use), all on loopback, and
// obtain one certificate for example.test and *.example.test in one order
// with each client: the lego CLI (acme-dns provider with pre-seeded
// credentials and through its own first-use registration; httpreq provider
// in default mode, RAW mode, and with CNAME following off so /present gets
// the _acme-challenge name), Debian's certbot with hooks in the style of the
// acme-dns certbot hook, the Go libraries nrdcg/goacmedns (credentials in
// cert-manager's acmedns.json shape) and cpu/goacmedns v0.1.1 driven through
// the lego library, and acme.sh's dns_acmedns request and parsing logic
// (reproduced in testdata/acmesh_dns_acmedns.sh) as certbot's hook.
//
// Every issuance is checked: the certificate covers exactly the two names and
// chains to the root of the Pebble instance that issued it. Each subtest logs
// one parseable line with the time the client took:
//
//	ISSUANCE client=<name> version=<version> result=ok|fail seconds=<s>
//
// Run: go test -race -count=1 -v -run TestRealClients ./e2e/clients/
// (-short skips the suite). External tools are found as e2e/harness
// documents (PATH, $DELEGATED_E2E_BIN); a missing one skips locally and fails
// under CI with its install command.
package clients
