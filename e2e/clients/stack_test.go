package clients

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/e2e/harness"
)

// Names of the test world (e2e-recipe.md).
const (
	// serviceZone is the zone delegated serves.
	serviceZone = "auth.example.test"
	// customerDomain is the name certificates are issued for; its zone is
	// served by pebble-challtestsrv.
	customerDomain = "example.test"
	// challengeName is where the customer's CNAME to delegated lives; the
	// apex and the wildcard share it.
	challengeName = "_acme-challenge." + customerDomain
)

// wantNames is what every certificate must cover, exactly, sorted.
func wantNames() []string { return []string{"*." + customerDomain, customerDomain} }

// delegatedConfig is the config.toml the suite runs delegated with. Four
// values per account leave room for the most one account receives here:
// lego's first-use flow adds one value in its failed first order and two in
// the second.
const delegatedConfig = `# written by e2e/clients
[zone]
domain = %q
nsname = %q
nsadmin = %q
records = [%q]

[dns]
listen = [%q]
# The RFC 2136 tests send bad signatures on purpose, and probe new keys.
update_failures_per_minute = 100

[api]
listen = [%q]

[store]
driver = "sqlite3"
dsn = "delegated.db"

[values]
per_account = 4

[log]
format = "text"
level = "debug"
`

// stack is one set of running components shared by the subtests of a test:
// delegated, the customer zone, the resolver and the CA.
type stack struct {
	// apiURL is delegated's API, "http://127.0.0.1:port" (no trailing
	// slash); dnsAddr its DNS listener.
	apiURL, dnsAddr string
	// cfgPath is delegated's config file, for the CLI (account add).
	cfgPath  string
	zone     *harness.ChallTestSrv
	resolver *harness.Unbound
	ca       *harness.Pebble
	roots    *x509.CertPool
	http     *http.Client
}

// startStack starts every component in the recipe's order and waits until
// each answers.
func startStack(t *testing.T) *stack {
	t.Helper()
	started := time.Now()
	s := &stack{http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	s.zone = harness.StartChallTestSrv(t)
	s.startDelegated(t)
	s.resolver = harness.StartUnbound(t, map[string]string{
		customerDomain: s.zone.DNSAddr,
		serviceZone:    s.dnsAddr,
	})
	s.ca = harness.StartPebble(t, harness.PebbleOptions{DNSServer: s.resolver.Addr})
	roots, err := s.ca.RootPool()
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	s.roots = roots
	t.Logf("stack ready in %s: delegated api %s dns %s, challtestsrv %s, unbound %s, pebble %s",
		time.Since(started).Round(time.Millisecond), s.apiURL, s.dnsAddr, s.zone.DNSAddr, s.resolver.Addr, s.ca.DirectoryURL)
	return s
}

// startDelegated runs `delegated serve` on free ports. The ports are free
// when picked but may be taken before delegated binds them, so a start that
// exits early is retried with new ones.
func (s *stack) startDelegated(t *testing.T) {
	t.Helper()
	bin := serverBinary(t)
	const attempts = 3
	for attempt := 1; ; attempt++ {
		dnsPort := harness.FreePort(t)
		apiPort := harness.FreePort(t)
		for apiPort == dnsPort {
			apiPort = harness.FreePort(t)
		}
		dir := t.TempDir()
		cfg := fmt.Sprintf(delegatedConfig, serviceZone, serviceZone, "hostmaster."+serviceZone,
			serviceZone+". A 127.0.0.1", harness.HostPort(dnsPort), harness.HostPort(apiPort))
		cfgPath := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatalf("write delegated config: %v", err)
		}
		p := harness.StartProcess(t, harness.ProcessOptions{
			Name: "delegated", Path: bin, Args: []string{"serve", "--config", cfgPath}, Dir: dir, GoStacks: true,
		})
		apiURL := "http://" + harness.HostPort(apiPort)
		dnsAddr := harness.HostPort(dnsPort)
		err := p.WaitReady(0, func() error { return s.probeDelegated(apiURL, dnsAddr) })
		if err == nil {
			s.apiURL, s.dnsAddr, s.cfgPath = apiURL, dnsAddr, cfgPath
			return
		}
		exited, _ := p.Exited()
		_ = p.Stop()
		if !exited || attempt == attempts {
			t.Fatalf("start delegated (attempt %d): %v", attempt, err)
		}
		t.Logf("delegated exited during start (attempt %d), retrying on new ports: %v", attempt, err)
	}
}

// probeDelegated is ready when /health answers 200 and DNS serves the
// zone's SOA.
func (s *stack) probeDelegated(apiURL, dnsAddr string) error {
	resp, err := s.http.Get(apiURL + "/health")
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s", resp.Status)
	}
	if _, err := harness.SOASerial(dnsAddr, serviceZone); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// account is delegated's /register reply.
type account struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	FullDomain string   `json:"fulldomain"`
	SubDomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

// register creates an account the way an operator would with
// `curl -X POST .../register` and returns the reply and its raw body.
func (s *stack) register(t *testing.T) (account, []byte) {
	t.Helper()
	resp, err := s.http.Post(s.apiURL+"/register", "", nil)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("register: read body: %v", err)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %s: %s", resp.Status, body)
	}
	var a account
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("register: %v: %s", err, body)
	}
	if a.Username == "" || a.Password == "" || a.SubDomain == "" || a.FullDomain != a.SubDomain+"."+serviceZone {
		t.Fatalf("register: incomplete or inconsistent reply: %s", body)
	}
	return a, body
}

// delegate points the customer's _acme-challenge CNAME at fulldomain (the
// one-time setup every acme-dns user does) and waits until the resolver the
// CA uses follows it for TXT, the type the CA asks. Asking for TXT matters:
// pebble-challtestsrv puts an out-of-zone SOA into its NODATA answers, which
// unbound strips as possible poison, and unbound then caches the NODATA
// without SOA for about 5 s whatever cache-max-negative-ttl says (seen in
// its verbosity-4 log). A TXT lookup made while the CNAME was missing (the
// CA's check in lego's first-use run) would otherwise be answered from that
// cache for a few seconds after the CNAME exists: "No TXT records found".
func (s *stack) delegate(t *testing.T, fulldomain string) {
	t.Helper()
	if err := s.zone.SetCNAME(challengeName, fulldomain); err != nil {
		t.Fatalf("set CNAME: %v", err)
	}
	want := dns.Fqdn(fulldomain)
	harness.Eventually(t, 15*time.Second, 100*time.Millisecond, "CNAME followed by unbound for TXT", func() error {
		r, err := harness.Query(s.resolver.Addr, challengeName, dns.TypeTXT)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("TXT %s: rcode %s", challengeName, dns.RcodeToString[r.Rcode])
		}
		for _, rr := range r.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Target, want) {
				return nil
			}
		}
		return fmt.Errorf("TXT %s: no CNAME to %s in the answer:\n%s", challengeName, want, r)
	})
}

// servedValues returns the TXT values delegated itself serves for fqdn,
// asking its DNS listener directly (no resolver cache in between).
func (s *stack) servedValues(t *testing.T, fqdn string) []string {
	t.Helper()
	r, err := harness.Query(s.dnsAddr, fqdn, dns.TypeTXT)
	if err != nil {
		t.Fatalf("query delegated: %v", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("query delegated TXT %s: rcode %s", fqdn, dns.RcodeToString[r.Rcode])
	}
	var vals []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			vals = append(vals, strings.Join(txt.Txt, ""))
		}
	}
	return vals
}

// verifyCertificate checks a PEM bundle (leaf first, then the chain the CA
// sent): the leaf covers exactly wantNames and chains to this Pebble's
// root.
func (s *stack) verifyCertificate(t *testing.T, bundle []byte) {
	t.Helper()
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("parse certificate: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		t.Fatalf("no certificate in bundle:\n%s", bundle)
	}
	leaf := certs[0]
	names := slices.Sorted(slices.Values(leaf.DNSNames))
	if !slices.Equal(names, wantNames()) {
		t.Fatalf("certificate names %q, want exactly %q", names, wantNames())
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.roots,
		Intermediates: inter,
		DNSName:       customerDomain,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatalf("certificate does not chain to Pebble's root: %v", err)
	}
	t.Logf("certificate serial %x, names %q, chain of %d to %q", leaf.SerialNumber, names, len(chains[0]), chains[0][len(chains[0])-1].Subject.CommonName)
}

// issuance measures one client's issuance and logs the ISSUANCE line when
// its test ends.
type issuance struct {
	client, version string
	seconds         float64
	ok              bool
}

// trackIssuance registers the ISSUANCE log line for t. The result is "ok"
// only if markOK was called and the test did not fail.
func trackIssuance(t *testing.T, client, version string) *issuance {
	is := &issuance{client: client, version: version}
	t.Cleanup(func() {
		result := "fail"
		if is.ok && !t.Failed() {
			result = "ok"
		}
		t.Logf("ISSUANCE client=%s version=%s result=%s seconds=%.2f", is.client, is.version, result, is.seconds)
	})
	return is
}

// measure runs fn and records its duration as the issuance time.
func (is *issuance) measure(fn func() error) error {
	start := time.Now()
	err := fn()
	is.seconds = time.Since(start).Seconds()
	return err
}

func (is *issuance) markOK() { is.ok = true }

// moduleVersion is the version of a Go module the test binary links, as
// go.mod selects it (test binaries carry no dependency list in their build
// info).
func moduleVersion(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", path).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

// loopbackEnv is added to every client process: nothing here goes through
// a proxy, whatever the machine's environment says (Go skips proxies for
// loopback by itself; curl and Python requests do not).
func loopbackEnv() []string {
	return []string{"NO_PROXY=127.0.0.1,localhost,::1", "no_proxy=127.0.0.1,localhost,::1"}
}

// readOutput reads a file a client wrote, listing the folder above it when
// missing so the failure shows where the client put things instead.
func readOutput(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	dir := filepath.Dir(filepath.Dir(path))
	var listing bytes.Buffer
	_ = filepath.WalkDir(dir, func(p string, _ os.DirEntry, _ error) error {
		fmt.Fprintln(&listing, p)
		return nil
	})
	return nil, fmt.Errorf("client output: %w; files under %s:\n%s", err, dir, listing.String())
}
