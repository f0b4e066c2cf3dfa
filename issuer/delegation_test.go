package issuer

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
)

// TestDelegationCheck resolves real records: NSD serves the customer zone
// and unbound resolves it, as the CA's resolvers would.
func TestDelegationCheck(t *testing.T) {
	zone := `$ORIGIN example.test.
$TTL 0
@ SOA ns hostmaster 1 3600 600 86400 0
@ NS ns
ns A 127.0.0.1
_acme-challenge.ok CNAME sub-ok.auth.example.test.
_acme-challenge.wrong CNAME other.auth.example.test.
_acme-challenge.txt TXT "flattened-value"
_acme-challenge.a A 192.0.2.1
`
	nsd := harness.StartNSD(t, "example.test", zone)
	// broken.test is stubbed to NSD, which is not its authority and
	// refuses: unbound then answers SERVFAIL.
	resolver := harness.StartUnboundWith(t, harness.UnboundOptions{
		Stubs:     map[string]string{"example.test": nsd.Addr, "broken.test": nsd.Addr},
		ReadyZone: "example.test",
	})
	silent := silentServer(t)

	tests := []struct {
		name, base, target string
		resolver           string
		ok                 bool
		problem            string
		explain            []string
	}{
		{"in place", "ok.example.test", "sub-ok.auth.example.test.", resolver.Addr, true, "", nil},
		{"in place, case differs", "ok.example.test", "SUB-OK.auth.example.test.", resolver.Addr, true, "", nil},
		{"missing", "missing.example.test", "sub-m.auth.example.test.", resolver.Addr, false, ProblemMissing,
			[]string{"_acme-challenge.missing.example.test.: no record; create _acme-challenge.missing.example.test. CNAME sub-m.auth.example.test."}},
		{"wrong target", "wrong.example.test", "sub-w.auth.example.test.", resolver.Addr, false, ProblemWrongTarget,
			[]string{"CNAME points to other.auth.example.test., expected sub-w.auth.example.test."}},
		{"TXT where the CNAME belongs", "txt.example.test", "sub-t.auth.example.test.", resolver.Addr, false, ProblemNotCNAME,
			[]string{"found _acme-challenge.txt.example.test. 0 IN TXT \"flattened-value\" where a CNAME belongs", "create _acme-challenge.txt.example.test. CNAME sub-t.auth.example.test."}},
		{"A where the CNAME belongs", "a.example.test", "sub-a.auth.example.test.", resolver.Addr, false, ProblemNotCNAME,
			[]string{"found _acme-challenge.a.example.test. 0 IN A 192.0.2.1 where a CNAME belongs"}},
		{"SERVFAIL", "x.broken.test", "sub-b.auth.example.test.", resolver.Addr, false, ProblemResolve,
			[]string{"answered SERVFAIL"}},
		{"timeout", "ok.example.test", "sub-ok.auth.example.test.", silent, false, ProblemResolve,
			[]string{"timeout after 300ms"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &checker{resolvers: []string{tc.resolver}, timeout: 300 * time.Millisecond}
			if tc.name == "SERVFAIL" {
				c.timeout = 5 * time.Second
			}
			d := Delegation{BaseName: tc.base, Name: "_acme-challenge." + tc.base + ".", Target: tc.target}
			c.check(context.Background(), &d)
			if d.OK != tc.ok || d.Problem != tc.problem {
				t.Fatalf("ok=%v problem=%q (%s); want ok=%v problem=%q", d.OK, d.Problem, d.Explain(), tc.ok, tc.problem)
			}
			for _, want := range tc.explain {
				if !strings.Contains(d.Explain(), want) {
					t.Errorf("explanation %q lacks %q", d.Explain(), want)
				}
			}
		})
	}

	// Through the zone's own servers too (its NS record names 127.0.0.1,
	// so the port picks which server answers): the one that serves the
	// zone agrees; a stale one (an NS not yet updated) or a silent one is
	// reported although the resolver's answer is right.
	stale := harness.StartNSD(t, "example.test", strings.Replace(zone, "_acme-challenge.ok CNAME", "; gone", 1))
	silentPort := silent[strings.LastIndex(silent, ":")+1:]
	for _, tc := range []struct {
		name, port string
		ok         bool
		problem    string
		explain    string
		warning    string
	}{
		{"authoritative agrees", port(nsd.Addr), true, "", "", ""},
		{"authoritative stale", port(stale.Addr), false, ProblemMissing, "no record; create _acme-challenge.ok.example.test. CNAME sub-ok.auth.example.test. (authoritative: 127.0.0.1:", ""},
		// Unreachable from here while every resolver sees the CNAME: not
		// a reason to hold the certificate back, but said (issue 16).
		{"authoritative silent", silentPort, true, "", "", "every resolver sees the CNAME, but 1 of 1 authoritative servers did not answer (asking 127.0.0.1:" + silentPort + ": timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &checker{resolvers: []string{resolver.Addr}, timeout: 300 * time.Millisecond, authoritative: true, authPort: tc.port}
			d := Delegation{BaseName: "ok.example.test", Name: "_acme-challenge.ok.example.test.", Target: "sub-ok.auth.example.test."}
			c.check(context.Background(), &d)
			if d.OK != tc.ok || d.Problem != tc.problem || !strings.Contains(d.Explain(), tc.explain) {
				t.Fatalf("ok=%v problem=%q (%s / %s); want ok=%v problem=%q containing %q", d.OK, d.Problem, d.Explain(), d.Detail, tc.ok, tc.problem, tc.explain)
			}
			if !strings.Contains(d.Warning, tc.warning) || tc.warning == "" && d.Warning != "" {
				t.Errorf("warning %q, want %q", d.Warning, tc.warning)
			}
			if !tc.ok && !strings.HasPrefix(d.Detail, "authoritative: ") {
				t.Errorf("detail %q does not say the authoritative server disagrees", d.Detail)
			}
		})
	}

	// The typed error's message is the records to create.
	dels := []Delegation{
		{Name: "_acme-challenge.a.example.", Target: "s1.auth.example.", OK: true},
		{Name: "_acme-challenge.b.example.", Target: "s2.auth.example.", Problem: ProblemMissing},
	}
	err := delegationError(dels)
	if err == nil || !strings.Contains(err.Error(), "create _acme-challenge.b.example. CNAME s2.auth.example.") || strings.Contains(err.Error(), "a.example") {
		t.Errorf("error %v", err)
	}
}

// silentServer is a UDP socket on loopback that reads and never answers, so
// a query to it times out.
func silentServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
