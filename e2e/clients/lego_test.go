package clients

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
)

// legoCLI returns the lego binary and its version, failing when it is not
// the version the suite is written against (flags and messages change
// between releases).
func legoCLI(t *testing.T) (bin, version string) {
	t.Helper()
	bin = harness.RequireTool(t, "lego", harness.HintLego)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("lego --version: %v\n%s", err, out)
	}
	// "lego version v4.35.2+dev-release linux/amd64"
	f := strings.Fields(string(out))
	if len(f) < 3 || !strings.HasPrefix(f[2], harness.LegoVersion) {
		t.Fatalf("lego at %s is %q, the suite needs %s; install with: %s", bin, strings.TrimSpace(string(out)), harness.LegoVersion, harness.HintLego)
	}
	return bin, f[2]
}

// legoArgs is the recipe's lego command line for one order of the apex and
// the wildcard, with its state under dir. propagation replaces the
// recipe's propagation flags when given.
func (s *stack) legoArgs(dir, provider string, propagation ...string) []string {
	if len(propagation) == 0 {
		// Propagation is checked through the same unbound Pebble uses;
		// the authoritative check would ask auth.example.test's NS on
		// port 53, where nothing of ours listens.
		propagation = []string{"--dns.propagation-disable-ans", "--dns.propagation-rns"}
	}
	args := []string{
		"--server", s.ca.DirectoryURL, "--accept-tos", "--email", "e2e@example.test",
		"--path", filepath.Join(dir, "lego"),
		"--dns", provider, "--dns.resolvers", s.resolver.Addr,
	}
	args = append(args, propagation...)
	return append(args, "-d", customerDomain, "-d", "*."+customerDomain, "run")
}

// legoEnv is the environment every lego run needs: trust Pebble's HTTPS
// certificate.
func (s *stack) legoEnv(extra ...string) []string {
	return append([]string{"LEGO_CA_CERTIFICATES=" + s.ca.MiniCAPath}, extra...)
}

// verifyLegoCertificate checks the bundle lego stored under dir (lego names
// the files after the first domain).
func (s *stack) verifyLegoCertificate(t *testing.T, dir string) {
	t.Helper()
	bundle, err := readOutput(filepath.Join(dir, "lego", "certificates", customerDomain+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	s.verifyCertificate(t, bundle)
}

// legoStorageEntry is one account in the JSON file lego's acme-dns
// provider reads (ACME_DNS_STORAGE_PATH), keyed by the bare domain.
type legoStorageEntry struct {
	FullDomain string `json:"fulldomain"`
	SubDomain  string `json:"subdomain"`
	Username   string `json:"username"`
	Password   string `json:"password"`
	ServerURL  string `json:"server_url"`
}

// testLegoACMEDNSPreseeded: the operator registered the account and wrote
// lego's storage file; lego only updates.
func testLegoACMEDNSPreseeded(t *testing.T, s *stack) {
	bin, version := legoCLI(t)
	is := trackIssuance(t, "lego-cli-acme-dns-preseeded", version)
	acct, _ := s.register(t)
	s.delegate(t, acct.FullDomain)

	dir := t.TempDir()
	storage := filepath.Join(dir, "acme-dns-accounts.json")
	b, err := json.Marshal(map[string]legoStorageEntry{customerDomain: {
		FullDomain: acct.FullDomain, SubDomain: acct.SubDomain,
		Username: acct.Username, Password: acct.Password, ServerURL: s.apiURL,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(storage, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := s.legoEnv("ACME_DNS_API_BASE="+s.apiURL, "ACME_DNS_STORAGE_PATH="+storage)
	var out string
	err = is.measure(func() error {
		out, err = runClient(t, dir, "lego", env, bin, s.legoArgs(dir, "acme-dns")...)
		return err
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(out, 40))
	}
	s.verifyLegoCertificate(t, dir)
	is.markOK()
}

// cnameInstruction is the record lego asks for after its first-use
// registration: "_acme-challenge.example.test. CNAME <fulldomain>." — one
// trailing dot, which lego appends, so fulldomain must come without one.
var cnameInstruction = regexp.MustCompile(`(?m)` + regexp.QuoteMeta(challengeName+".") + ` CNAME (\S+)$`)

// testLegoACMEDNSFirstUse: lego finds no account, registers one itself,
// prints the CNAME to create and stops; once the CNAME exists, the same
// command obtains the certificate.
func testLegoACMEDNSFirstUse(t *testing.T, s *stack) {
	bin, version := legoCLI(t)
	is := trackIssuance(t, "lego-cli-acme-dns-first-use", version)
	// A customer who has not delegated yet: no CNAME at all.
	if err := s.zone.ClearCNAME(challengeName); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	storage := filepath.Join(dir, "acme-dns-accounts.json")
	env := s.legoEnv("ACME_DNS_API_BASE="+s.apiURL, "ACME_DNS_STORAGE_PATH="+storage)

	// The first run only has to register: its order cannot succeed. A
	// fixed short wait replaces lego's propagation check there, which
	// would otherwise poll for its full 60 s timeout for the authorization
	// whose Present did succeed (the wildcard shares the apex's account).
	first := time.Now()
	out, err := runClient(t, dir, "lego-first", env, bin, s.legoArgs(dir, "acme-dns", "--dns.propagation-wait", "1s")...)
	t.Logf("first lego run (registration) took %.2fs", time.Since(first).Seconds())
	if err == nil {
		t.Fatalf("first lego run succeeded without a CNAME in place:\n%s", tail(out, 40))
	}
	m := cnameInstruction.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("first lego run did not print the CNAME to create (%v):\n%s", err, tail(out, 40))
	}
	target := m[1]
	b, err := os.ReadFile(storage)
	if err != nil {
		t.Fatalf("lego did not save the account it registered: %v\n%s", err, tail(out, 40))
	}
	var saved map[string]legoStorageEntry
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatalf("lego's storage file: %v\n%s", err, b)
	}
	acct, ok := saved[customerDomain]
	if !ok {
		t.Fatalf("lego's storage file has no entry for %s:\n%s", customerDomain, b)
	}
	if want := acct.SubDomain + "." + serviceZone + "."; target != want || acct.FullDomain+"." != want {
		t.Fatalf("CNAME instruction target %q, stored fulldomain %q; want %q", target, acct.FullDomain, want)
	}
	t.Logf("lego registered %s and asked for: %s", acct.Username, m[0])

	s.delegate(t, acct.FullDomain)
	err = is.measure(func() error {
		out, err = runClient(t, dir, "lego", env, bin, s.legoArgs(dir, "acme-dns")...)
		return err
	})
	if err != nil {
		t.Fatalf("second lego run, CNAME in place: %v\n%s", err, tail(out, 40))
	}
	s.verifyLegoCertificate(t, dir)
	is.markOK()
}

// httpreqVariant is one way lego's httpreq provider calls /present and
// /cleanup.
type httpreqVariant struct {
	// name labels the ISSUANCE line.
	name string
	// env selects the variant: HTTPREQ_MODE=RAW sends {domain, token,
	// keyAuth}; by default lego sends {fqdn, value} with fqdn the
	// account's fulldomain (lego follows the CNAME), or
	// _acme-challenge.<domain>. with LEGO_DISABLE_CNAME_SUPPORT=true.
	env []string
}

// testLegoHTTPReq uses lego's httpreq provider against delegated's /present
// and /cleanup, authenticated with the account's own credentials.
func testLegoHTTPReq(t *testing.T, s *stack, v httpreqVariant) {
	bin, version := legoCLI(t)
	is := trackIssuance(t, v.name, version)
	acct, _ := s.register(t)
	s.delegate(t, acct.FullDomain)

	dir := t.TempDir()
	env := s.legoEnv(append([]string{"HTTPREQ_ENDPOINT=" + s.apiURL, "HTTPREQ_USERNAME=" + acct.Username, "HTTPREQ_PASSWORD=" + acct.Password}, v.env...)...)
	var out string
	err := is.measure(func() error {
		var err error
		out, err = runClient(t, dir, "lego", env, bin, s.legoArgs(dir, "httpreq")...)
		return err
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(out, 40))
	}
	s.verifyLegoCertificate(t, dir)
	// lego called /cleanup for both values; unlike acme-dns, the values
	// must really be gone.
	if vals := s.servedValues(t, acct.FullDomain); len(vals) != 0 {
		t.Errorf("after lego's /cleanup calls delegated still serves %s TXT %q", acct.FullDomain, vals)
	}
	is.markOK()
}
