package clients

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/e2e/harness"
)

const hintBind = "apt-get install -y bind9-dnsutils"

// tsigAccount is what `delegated account add --tsig` printed.
type tsigAccount struct {
	fulldomain string
	// keyFile holds the printed BIND key clause, which nsupdate -k reads.
	keyFile         string
	keyName, secret string
	algorithm       string
	env             []string // the RFC2136_* lines for lego
	cname           string
	subdomainInZone string // <subdomain>.<zone>, no trailing dot
}

var (
	keyClause = regexp.MustCompile(`(?s)key "([^"]+)" \{\s*algorithm ([a-z0-9-]+);\s*secret "([^"]+)";\s*\};`)
	cnameLine = regexp.MustCompile(`(?m)^_acme-challenge\.\S+ CNAME (\S+)$`)
)

// addTSIGAccount runs the operator's command and parses what it printed.
// A running daemon is asked to republish the account, key included, so
// the key signs at once.
func (s *stack) addTSIGAccount(t *testing.T, dir string) tsigAccount {
	t.Helper()
	out, err := runClient(t, dir, "account-add-tsig", nil, serverBinary(t),
		"account", "add", "--config", s.cfgPath, "--tsig", "--domain", customerDomain, "--nameserver", s.dnsAddr)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := keyClause.FindStringSubmatch(out)
	c := cnameLine.FindAllStringSubmatch(out, -1)
	if m == nil || len(c) == 0 {
		t.Fatalf("account add --tsig printed no key clause or CNAME:\n%s", out)
	}
	a := tsigAccount{keyName: m[1], algorithm: m[2], secret: m[3], cname: c[len(c)-1][1]}
	a.fulldomain = strings.TrimSuffix(a.cname, ".")
	a.subdomainInZone = a.fulldomain
	if a.keyName != a.cname || a.algorithm != "hmac-sha256" || !strings.HasSuffix(a.fulldomain, "."+serviceZone) {
		t.Fatalf("key %q %q for CNAME %q: want the key named after the account's name, hmac-sha256", a.keyName, a.algorithm, a.cname)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "RFC2136_") {
			a.env = append(a.env, line)
		}
	}
	want := []string{"RFC2136_NAMESERVER=" + s.dnsAddr, "RFC2136_TSIG_KEY=" + a.keyName, "RFC2136_TSIG_SECRET=" + a.secret, "RFC2136_TSIG_ALGORITHM=hmac-sha256."}
	if !slices.Equal(a.env, want) {
		t.Fatalf("environment lines %q, want %q", a.env, want)
	}
	a.keyFile = filepath.Join(dir, "tsig.key")
	if err := os.WriteFile(a.keyFile, []byte(m[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The CLI asked the daemon to republish the account with its key; if
	// the daemon was too busy to answer, it reads the store within a
	// second. A prerequisite-only update probes the key, writing nothing.
	harness.Eventually(t, 10*time.Second, 200*time.Millisecond, "delegated knows the new key", func() error {
		msg := new(dns.Msg)
		msg.SetUpdate(serviceZone + ".")
		msg.NameUsed([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: serviceZone + ".", Rrtype: dns.TypeANY, Class: dns.ClassANY}}})
		msg.SetTsig(a.keyName, dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Timeout: 3 * time.Second, TsigSecret: map[string]string{a.keyName: a.secret}}
		r, _, err := c.Exchange(msg, s.dnsAddr)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("probe: %s", dns.RcodeToString[r.Rcode])
		}
		return nil
	})
	return a
}

// nsupdate runs nsupdate -k key (no -k when key is "") on the commands in
// script, after "server" and "zone" lines, and returns its output.
func (s *stack) nsupdate(t *testing.T, dir, key string, script string, flags ...string) (string, error) {
	t.Helper()
	bin := harness.RequireTool(t, "nsupdate", hintBind)
	host, port, _ := strings.Cut(s.dnsAddr, ":")
	f, err := os.CreateTemp(dir, "nsupdate-*.txt")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "server %s %s\nzone %s\n%s\nsend\n", host, port, serviceZone, script)
	f.Close()
	args := append([]string{}, flags...)
	if key != "" {
		args = append(args, "-k", key)
	}
	return runClient(t, dir, "nsupdate", nil, bin, append(args, f.Name())...)
}

// dig returns the TXT values dig reads from delegated for name.
func (s *stack) dig(t *testing.T, name string) []string {
	t.Helper()
	bin := harness.RequireTool(t, "dig", hintBind)
	host, port, _ := strings.Cut(s.dnsAddr, ":")
	out, err := exec.Command(bin, "+short", "+tries=1", "+time=3", "@"+host, "-p", port, name, "TXT").CombinedOutput()
	if err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	var vals []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.Trim(l, `"`); l != "" {
			vals = append(vals, l)
		}
	}
	slices.Sort(vals)
	return vals
}

func challengeValue(c byte) string { return strings.Repeat(string(c), 43) }

// testNsupdate: nsupdate -k adds and deletes values (dig reads them back),
// over UDP and TCP; each bad update gets its rcode and changes nothing.
func testNsupdate(t *testing.T, s *stack) {
	dir := t.TempDir()
	a := s.addTSIGAccount(t, dir)
	own := a.subdomainInZone
	v1, v2 := challengeValue('a'), challengeValue('b')

	out, err := s.nsupdate(t, dir, a.keyFile, fmt.Sprintf("update add %s 60 TXT %s", own, v1), "-d")
	if err != nil {
		t.Fatalf("nsupdate add: %v\n%s", err, out)
	}
	t.Logf("nsupdate -d session:\n%s", out)
	if got := s.dig(t, own); !slices.Equal(got, []string{v1}) {
		t.Fatalf("after add: dig %q", got)
	}
	if out, err := s.nsupdate(t, dir, a.keyFile, fmt.Sprintf("update add %s 60 TXT %s", own, v2), "-v"); err != nil {
		t.Fatalf("nsupdate -v (TCP) add: %v\n%s", err, out)
	}
	if got := s.dig(t, own); !slices.Equal(got, []string{v1, v2}) {
		t.Fatalf("after second add: dig %q", got)
	}
	if out, err := s.nsupdate(t, dir, a.keyFile, fmt.Sprintf("update delete %s TXT %s", own, v1)); err != nil {
		t.Fatalf("nsupdate delete: %v\n%s", err, out)
	}
	if got := s.dig(t, own); !slices.Equal(got, []string{v2}) {
		t.Fatalf("after delete: dig %q", got)
	}

	// Rejected updates: the rcode nsupdate reports, and v2 alone stays.
	other := s.addTSIGAccount(t, t.TempDir())
	wrong := filepath.Join(dir, "wrong.key")
	if err := os.WriteFile(wrong, []byte(strings.Replace(mustRead(t, a.keyFile), a.secret, other.secret, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, key, script, want string
	}{
		{"unsigned", "", fmt.Sprintf("update add %s 60 TXT %s", own, v1), "update failed: REFUSED"},
		{"wrong secret", wrong, fmt.Sprintf("update add %s 60 TXT %s", own, v1), "update failed: NOTAUTH(BADSIG)"},
		{"another account's name", a.keyFile, fmt.Sprintf("update add %s 60 TXT %s", other.subdomainInZone, v1), "update failed: REFUSED"},
		{"non-TXT type", a.keyFile, fmt.Sprintf("update add %s 60 A 192.0.2.1", own), "update failed: REFUSED"},
		{"name outside the zone", a.keyFile, fmt.Sprintf("update add x.%s 60 TXT %s", customerDomain, v1), "update failed: NOTZONE"},
		{"atomic: good then bad", a.keyFile, fmt.Sprintf("update add %s 60 TXT %s\nupdate add %s 60 TXT %s", own, v1, other.subdomainInZone, v1), "update failed: REFUSED"},
		{"prerequisite fails", a.keyFile, fmt.Sprintf("prereq nxrrset %s TXT\nupdate add %s 60 TXT %s", own, own, v1), "update failed: YXRRSET"},
	} {
		out, err := s.nsupdate(t, dir, c.key, c.script)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: nsupdate %v, want %q:\n%s", c.name, err, c.want, out)
		}
		if got := s.dig(t, own); !slices.Equal(got, []string{v2}) {
			t.Errorf("%s: values changed to %q", c.name, got)
		}
		if got := s.dig(t, other.subdomainInZone); len(got) != 0 {
			t.Errorf("%s: the other account got %q", c.name, got)
		}
	}
	// What nsupdate cannot be made to send: an expired signature and a
	// malformed prerequisite, from a Go client with the same key.
	for _, c := range []struct {
		name   string
		signed time.Time
		build  func(m *dns.Msg)
		rcode  int
		tsig   uint16
	}{
		{"expired time", time.Now().Add(-time.Hour), func(m *dns.Msg) {}, dns.RcodeNotAuth, dns.RcodeBadTime},
		{"malformed prerequisite", time.Now(), func(m *dns.Msg) {
			m.Answer = append(m.Answer, &dns.ANY{Hdr: dns.RR_Header{Name: dns.Fqdn(own), Rrtype: dns.TypeTXT, Class: dns.ClassANY, Ttl: 60}})
		}, dns.RcodeFormatError, 0},
	} {
		m := new(dns.Msg)
		m.SetUpdate(serviceZone + ".")
		c.build(m)
		m.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(own), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v1}}})
		m.SetTsig(a.keyName, dns.HmacSHA256, 300, c.signed.Unix())
		cl := &dns.Client{Timeout: 5 * time.Second, TsigSecret: map[string]string{a.keyName: a.secret}}
		r, _, err := cl.Exchange(m, s.dnsAddr)
		if r == nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Rcode != c.rcode || (c.tsig != 0 && (r.IsTsig() == nil || r.IsTsig().Error != c.tsig)) {
			t.Errorf("%s: %s %v, want %s TSIG error %d", c.name, dns.RcodeToString[r.Rcode], r.IsTsig(), dns.RcodeToString[c.rcode], c.tsig)
		}
		if got := s.dig(t, own); !slices.Equal(got, []string{v2}) {
			t.Errorf("%s: values changed to %q", c.name, got)
		}
	}

	if out, err := s.nsupdate(t, dir, a.keyFile, fmt.Sprintf("update delete %s TXT", own)); err != nil {
		t.Fatalf("nsupdate delete RRset: %v\n%s", err, out)
	}
	if got := s.dig(t, own); len(got) != 0 {
		t.Fatalf("after deleting the RRset: dig %q", got)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testLegoRFC2136: the lego CLI's rfc2136 provider, configured with the
// printed RFC2136_* lines, issues the apex and the wildcard through the
// customer's CNAME (lego follows it and updates the delegated name).
func testLegoRFC2136(t *testing.T, s *stack) {
	bin, version := legoCLI(t)
	is := trackIssuance(t, "lego-cli-rfc2136", version)
	dir := t.TempDir()
	a := s.addTSIGAccount(t, dir)
	s.delegate(t, a.fulldomain)
	// rfc2136 solves one challenge at a time (both share the name); the
	// default pause between them is a minute.
	env := s.legoEnv(append(a.env, "RFC2136_SEQUENCE_INTERVAL=1", "RFC2136_POLLING_INTERVAL=1")...)
	var out string
	err := is.measure(func() error {
		var err error
		out, err = runClient(t, dir, "lego", env, bin, s.legoArgs(dir, "rfc2136")...)
		return err
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(out, 40))
	}
	s.verifyLegoCertificate(t, dir)
	if vals := s.servedValues(t, a.fulldomain); len(vals) != 0 {
		t.Errorf("after lego's cleanup delegated still serves %q", vals)
	}
	is.markOK()
}

// testCertbotNsupdate: certbot's manual hooks call nsupdate -k on the
// delegated name, as acme.sh's dns_nsupdate does with --domain-alias.
func testCertbotNsupdate(t *testing.T, s *stack) {
	bin, version := certbotTool(t)
	harness.RequireTool(t, "nsupdate", hintBind)
	is := trackIssuance(t, "certbot-nsupdate-hook", version)
	dir := t.TempDir()
	a := s.addTSIGAccount(t, dir)
	s.delegate(t, a.fulldomain)
	host, port, _ := strings.Cut(s.dnsAddr, ":")
	logPath := filepath.Join(dir, "hook.log")
	env := []string{"NSUPDATE_SERVER=" + host, "NSUPDATE_PORT=" + port, "NSUPDATE_ZONE=" + serviceZone,
		"NSUPDATE_KEY=" + a.keyFile, "NSUPDATE_ALIAS=" + a.fulldomain, "NSUPDATE_LOG=" + logPath}
	hook := testdataPath(t, "nsupdate_certbot_hook.sh")
	chain := s.runCertbot(t, is, certbotRun{
		bin: bin, dir: dir, env: env,
		authHook: hookCommand(t, hook, "auth"), cleanupHook: hookCommand(t, hook, "cleanup"),
	})
	s.verifyCertificate(t, chain)
	lines := hookLog(t, logPath)
	if want := []string{"auth " + customerDomain + " ok", "auth " + customerDomain + " ok", "cleanup " + customerDomain + " ok", "cleanup " + customerDomain + " ok"}; !slices.Equal(lines, want) {
		t.Errorf("hook calls %q, want %q", lines, want)
	}
	if vals := s.servedValues(t, a.fulldomain); len(vals) != 0 {
		t.Errorf("after the cleanup hook delegated still serves %q", vals)
	}
	is.markOK()
}
