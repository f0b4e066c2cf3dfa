package e2eissuer_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
	"github.com/delegated/delegated/issuer"
)

var (
	// accountRecordRE is a dns-account-01 record as the CLI prints it.
	accountRecordRE = regexp.MustCompile(`(?m)^(_[a-z2-7]{16}\._acme-challenge\.[a-z0-9.-]+\.) CNAME ([0-9a-f-]{36}\.[a-z0-9.-]+\.)$`)
	// persistRecordRE is a dns-persist-01 record.
	persistRecordRE = regexp.MustCompile(`(?m)^(_validation-persist\.[a-z0-9.-]+\.) CNAME ([0-9a-f-]{36}\.[a-z0-9.-]+\.)$`)
	// accountURIRE finds the daemon's ACME account URL in its log.
	accountURIRE = regexp.MustCompile(`msg="acme account registered".* uri=(\S+)`)
)

// shortlived is the test CA's short profile: 6 days, like Let's Encrypt's.
const shortlived = 6 * 24 * time.Hour

func withProfiles(c *harness.PebbleConfig) {
	c.Pebble.Profiles["shortlived"] = harness.PebbleProfile{Description: "6-day certificates", ValidityPeriod: uint64(shortlived / time.Second)}
}

// matches returns owner → target of every line re finds in out.
func matches(re *regexp.Regexp, out string) map[string]string {
	m := map[string]string{}
	for _, r := range re.FindAllStringSubmatch(out, -1) {
		m[r[1]] = r[2]
	}
	return m
}

// accountURL is the ACME account a daemon registered, from its log.
func accountURL(t *testing.T, logPath string) string {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	m := accountURIRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no account registration in %s", logPath)
	}
	return string(m[1])
}

// txt returns the TXT strings at name from server (no recursion).
func txt(t *testing.T, server, name string) []string {
	t.Helper()
	m, err := harness.Query(server, name, dns.TypeTXT)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range m.Answer {
		if r, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(r.Txt, ""))
		}
	}
	return out
}

// TestValidationMethods issues through dns-account-01 and dns-persist-01
// with only that method's CNAME in the customer zone, renews the
// dns-persist-01 certificate with nothing changed there, and issues and
// renews under the shortlived profile.
func TestValidationMethods(t *testing.T) {
	s := e2e.Start(t, e2e.Options{PebbleModify: withProfiles})
	cnames := map[string]string{}

	// dns-account-01: the record carries this daemon's account label.
	out, code := s.CLI("issue", "--cert-name", "acct", "--challenge", "dns-account-01", "-d", "www.example.test", "--no-wait")
	t.Logf("delegated issue --cert-name acct --challenge dns-account-01 -d www.example.test --no-wait\n%s", out)
	if code != 0 {
		t.Fatalf("issue: exit %d", code)
	}
	acctRecs := matches(accountRecordRE, out)
	acctURL := accountURL(t, s.Daemon.LogPath)
	wantName := issuer.AccountChallengeName(acctURL, "www.example.test")
	if len(acctRecs) != 1 || acctRecs[wantName] == "" {
		t.Fatalf("want the one record %s CNAME …, got %v", wantName, acctRecs)
	}
	if len(records(t, out)) != 0 {
		t.Fatalf("dns-account-01 printed a dns-01 record:\n%s", out)
	}
	if !strings.Contains(out, "status: pending delegation") {
		t.Fatalf("want pending delegation without the CNAME:\n%s", out)
	}
	addAll(cnames, acctRecs)
	s.SetCNAMEs(cnames)
	c := waitActive(t, s, "acct", 90*time.Second)
	if c.Challenge != "dns-account-01" {
		t.Errorf("challenge %q, want dns-account-01", c.Challenge)
	}
	checkDeployed(t, s, c, []string{"www.example.test"})
	t.Logf("customer zone: %v; account %s", cnames, acctURL)

	// dns-persist-01, apex and wildcard: one lasting record.
	out, code = s.CLI("issue", "--cert-name", "persist", "--challenge", "dns-persist-01", "-d", "example.test", "-d", "*.example.test", "--no-wait")
	t.Logf("delegated issue --cert-name persist --challenge dns-persist-01 -d example.test -d '*.example.test' --no-wait\n%s", out)
	if code != 0 {
		t.Fatalf("issue: exit %d", code)
	}
	persistRecs := matches(persistRecordRE, out)
	target := persistRecs["_validation-persist.example.test."]
	if len(persistRecs) != 1 || target == "" || len(records(t, out)) != 0 {
		t.Fatalf("want only _validation-persist.example.test. CNAME …, got:\n%s", out)
	}
	addAll(cnames, persistRecs)
	s.SetCNAMEs(cnames)
	c = waitActive(t, s, "persist", 90*time.Second)
	if c.Challenge != "dns-persist-01" {
		t.Errorf("challenge %q, want dns-persist-01", c.Challenge)
	}
	checkDeployed(t, s, c, []string{"example.test", "*.example.test"})
	wantTXT := "pebble.letsencrypt.org; accounturi=" + acctURL + "; policy=wildcard"
	if got := txt(t, s.DNSAddr, target); !slices.Equal(got, []string{wantTXT}) {
		t.Fatalf("%s TXT %q, want %q", target, got, wantTXT)
	}
	t.Logf("customer zone: %v; %s TXT %q", cnames, target, wantTXT)

	// Renewal with nothing changed in the customer zone: the record
	// stays and validates the new order.
	before := c.Serial
	out, code = s.CLI("renew", "--cert-name", "persist", "--force")
	t.Logf("delegated renew --cert-name persist --force\n%s", out)
	if code != 0 {
		t.Fatalf("renew --force: exit %d", code)
	}
	c = mustCert(t, s, "persist")
	if c.Serial == before || c.Status != "active" {
		t.Fatalf("after renew: serial %s (was %s), status %s", c.Serial, before, c.Status)
	}
	checkDeployed(t, s, c, []string{"example.test", "*.example.test"})
	if got := txt(t, s.DNSAddr, target); !slices.Equal(got, []string{wantTXT}) {
		t.Errorf("after renewal %s TXT %q, want %q", target, got, wantTXT)
	}

	// Profiles: an unknown one is refused before any order, naming the
	// known ones.
	orders := s.PebbleOrders()
	out, code = s.CLI("issue", "--cert-name", "bad", "--profile", "longlived", "-d", "www.example.test", "--challenge", "dns-account-01")
	t.Logf("delegated issue --cert-name bad --profile longlived …\n%s", out)
	if code == 0 || !strings.Contains(out, `profile "longlived" is not offered by the CA`) ||
		!strings.Contains(out, "known profiles: default (default), shortlived (6-day certificates)") {
		t.Errorf("unknown profile: exit %d, want a refusal listing default and shortlived", code)
	}
	if n := s.PebbleOrders(); n != orders {
		t.Errorf("Pebble received %d orders for an unknown profile", n-orders)
	}

	// shortlived: the certificate's validity is the profile's, and a
	// renewal keeps the profile.
	out, code = s.CLI("issue", "--cert-name", "short", "--profile", "shortlived", "--challenge", "dns-account-01", "-d", "www.example.test")
	t.Logf("delegated issue --cert-name short --profile shortlived --challenge dns-account-01 -d www.example.test\n%s", out)
	if code != 0 {
		t.Fatalf("issue: exit %d", code)
	}
	checkValidity := func() {
		t.Helper()
		c := mustCert(t, s, "short")
		if c.Profile != "shortlived" {
			t.Errorf("profile %q, want shortlived", c.Profile)
		}
		leaf := readCerts(t, c.Paths.Cert)[0]
		// Pebble: NotAfter = NotBefore + validityPeriod - 1 s.
		if got := leaf.NotAfter.Sub(leaf.NotBefore) + time.Second; got != shortlived {
			t.Errorf("validity %s, want the profile's %s", got, shortlived)
		}
	}
	checkValidity()
	out, code = s.CLI("renew", "--cert-name", "short", "--force")
	if code != 0 {
		t.Fatalf("renew --force: exit %d: %s", code, out)
	}
	checkValidity()
	out, _ = s.CLI("certificates")
	t.Logf("delegated certificates\n%s", out)
	if !strings.Contains(out, "Challenge: dns-persist-01") || !strings.Contains(out, "Profile: shortlived") {
		t.Errorf("certificates lacks the challenge or profile lines")
	}

	// Deleting the dns-persist-01 certificate removes its record.
	if out, code := s.CLI("delete", "--cert-name", "persist", "--yes"); code != 0 {
		t.Fatalf("delete: exit %d: %s", code, out)
	}
	if got := txt(t, s.DNSAddr, target); len(got) != 0 {
		t.Errorf("after delete %s TXT %q, want none", target, got)
	}
}

func addAll(dst, src map[string]string) {
	for k, v := range src {
		dst[k] = v
	}
}

// TestMultiCDN: two deployments with their own ACME accounts and zones
// (two CDNs) hold valid certificates for the same www.example.test at the
// same time through dns-account-01, their orders running concurrently.
func TestMultiCDN(t *testing.T) {
	bin := e2e.BuildDelegated(t)
	customer := harness.StartNSD(t, "example.test", e2e.CustomerZone(1, nil))
	zones := []string{"cdn-a.example.test", "cdn-b.example.test"}
	dnsAddrs := []string{harness.FreeAddr(t), harness.FreeAddr(t)}
	resolver := harness.StartUnboundWith(t, harness.UnboundOptions{
		Stubs:     map[string]string{"example.test": customer.Addr, zones[0]: dnsAddrs[0], zones[1]: dnsAddrs[1]},
		ReadyZone: "example.test",
	})
	// Validations take up to 2 s each, so the two orders overlap.
	pebble := harness.StartPebble(t, harness.PebbleOptions{DNSServer: resolver.Addr, Env: []string{"PEBBLE_VA_NOSLEEP=0", "PEBBLE_VA_SLEEPTIME=2"}})
	cfgs := make([]string, 2)
	logs := make([]string, 2)
	for n := range 2 {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "operator.token"), []byte("cdn-operator-token-0123456789\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := e2e.DaemonConfig{
			Zone: zones[n], DNS: dnsAddrs[n], API: harness.FreeAddr(t), StoreDSN: "delegated.db",
			Directory: pebble.DirectoryURL, CARoots: pebble.MiniCAPath, Resolver: resolver.Addr,
			AuthoritativePort: e2e.Port(t, customer.Addr), DelegationRecheck: "1h",
			IssuerExtra: "challenge = \"dns-account-01\"",
		}.TOML()
		cfgs[n], logs[n] = filepath.Join(dir, "config.toml"), filepath.Join(dir, "delegated.log")
		if err := os.WriteFile(cfgs[n], []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		p := harness.StartProcess(t, harness.ProcessOptions{
			Name: "delegated-" + zones[n], Path: bin, Args: []string{"serve", "--config", cfgs[n]}, Dir: dir, LogPath: logs[n], GoStacks: true,
		})
		addr, zone := dnsAddrs[n], zones[n]
		if err := p.WaitReady(0, func() error {
			if _, err := os.Stat(filepath.Join(dir, "delegated.sock")); err != nil {
				return err
			}
			_, err := harness.Query(addr, zone+".", dns.TypeSOA)
			return err
		}); err != nil {
			t.Fatalf("%s did not start: %v", zone, err)
		}
	}
	cli := func(n int, args ...string) (string, int) {
		return e2e.RunCLI(t, bin, cfgs[n], 2*time.Minute, args...)
	}

	// Each deployment names its own record ([issuer] challenge is
	// dns-account-01 here, so no flag is needed).
	cnames := map[string]string{}
	for n := range 2 {
		out, code := cli(n, "issue", "--cert-name", "www", "-d", "www.example.test", "--no-wait")
		t.Logf("[%s] delegated issue --cert-name www -d www.example.test --no-wait\n%s", zones[n], out)
		if code != 0 {
			t.Fatalf("issue: exit %d", code)
		}
		recs := matches(accountRecordRE, out)
		want := issuer.AccountChallengeName(accountURL(t, logs[n]), "www.example.test")
		if len(recs) != 1 || !strings.HasSuffix(recs[want], "."+zones[n]+".") {
			t.Fatalf("want %s CNAME <sub>.%s., got %v", want, zones[n], recs)
		}
		addAll(cnames, recs)
	}
	if len(cnames) != 2 {
		t.Fatalf("the two accounts share a record name: %v", cnames)
	}
	if err := customer.Reload(e2e.CustomerZone(2, cnames)); err != nil {
		t.Fatal(err)
	}
	t.Logf("customer zone: %v", cnames)

	// Both orders at once.
	type result struct {
		out        string
		code       int
		start, end time.Time
	}
	results := make([]result, 2)
	done := make(chan int)
	for n := range 2 {
		go func() {
			start := time.Now()
			out, code := cli(n, "retry", "--cert-name", "www")
			results[n] = result{out, code, start, time.Now()}
			done <- n
		}()
	}
	<-done
	<-done
	for n, r := range results {
		t.Logf("[%s] delegated retry --cert-name www (%s–%s)\n%s", zones[n], r.start.Format("15:04:05.000"), r.end.Format("15:04:05.000"), r.out)
		if r.code != 0 {
			t.Fatalf("[%s] retry: exit %d", zones[n], r.code)
		}
	}
	if !results[0].start.Before(results[1].end) || !results[1].start.Before(results[0].end) {
		t.Errorf("the orders did not overlap")
	}

	// Both hold a valid certificate for www.example.test now.
	roots, err := pebble.RootPool()
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	for n := range 2 {
		out, code := cli(n, "certificates", "--json")
		if code != 0 {
			t.Fatalf("certificates: exit %d: %s", code, out)
		}
		leaf := readCerts(t, filepath.Join(filepath.Dir(cfgs[n]), "certs", "live", "www", "cert.pem"))[0]
		if err := leaf.VerifyHostname("www.example.test"); err != nil {
			t.Errorf("[%s] %v", zones[n], err)
		}
		chain := readCerts(t, filepath.Join(filepath.Dir(cfgs[n]), "certs", "live", "www", "fullchain.pem"))
		if err := verifyChain(chain, roots); err != nil {
			t.Errorf("[%s] chain: %v", zones[n], err)
		}
		if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			t.Errorf("[%s] not valid now: %s to %s", zones[n], leaf.NotBefore, leaf.NotAfter)
		}
		serials[leaf.SerialNumber.String()] = true
		if !strings.Contains(out, `"challenge": "dns-account-01"`) {
			t.Errorf("[%s] certificates --json lacks the challenge:\n%s", zones[n], out)
		}
	}
	if len(serials) != 2 {
		t.Errorf("the deployments hold one certificate, want one each")
	}
}

// verifyChain checks that chain (leaf first) leads to one of roots.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}
