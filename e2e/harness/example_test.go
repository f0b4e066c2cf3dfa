package harness_test

import (
	"os/exec"
	"testing"

	"github.com/delegated/delegated/e2e/harness"
	"github.com/miekg/dns"
)

// The recipe's stack for a client-compatibility test: the customer zone in
// challtestsrv, the service under test as the authority for
// auth.example.test, unbound stubbing both, Pebble validating through
// unbound, and the lego CLI as the client. (Compiled, not run: it needs the
// service binary.)
func Example() {
	var t *testing.T // the test's *testing.T

	cts := harness.StartChallTestSrv(t)

	// The service under test: build it, start it on free ports, wait.
	bin := harness.GoBuild(t, "github.com/delegated/delegated/cmd/delegated")
	dnsAddr, apiAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	svc := harness.StartProcess(t, harness.ProcessOptions{
		Path: bin,
		Args: []string{ /* config naming dnsAddr and apiAddr */ },
	})
	if err := svc.WaitReady(0, harness.DNSReady(dnsAddr, "auth.example.test.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}

	ub := harness.StartUnbound(t, map[string]string{
		"example.test":      cts.DNSAddr,
		"auth.example.test": dnsAddr,
	})
	pb := harness.StartPebble(t, harness.PebbleOptions{DNSServer: ub.Addr})

	// After registering with the API: delegate the challenge name.
	if err := cts.SetCNAME("_acme-challenge.example.test", "<subdomain>.auth.example.test"); err != nil {
		t.Fatal(err)
	}

	lego := harness.RequireTool(t, "lego", harness.HintLego)
	cmd := exec.Command(lego, "--server", pb.DirectoryURL, "--accept-tos", "--email", "e2e@example.test",
		"--path", t.TempDir(), "--dns", "acme-dns",
		"--dns.resolvers", ub.Addr, "--dns.propagation-disable-ans", "--dns.propagation-rns",
		"-d", "example.test", "-d", "*.example.test", "run")
	cmd.Env = append(cmd.Environ(), pb.ClientEnv()...)
	cmd.Env = append(cmd.Env, "ACME_DNS_API_BASE=http://"+apiAddr /* , ACME_DNS_STORAGE_PATH=… */)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lego: %v\n%s", err, out)
	}
}
