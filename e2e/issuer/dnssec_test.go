package e2eissuer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
	"github.com/miekg/dns"
)

// TestDNSSEC proves the signed zone end to end: a validating Unbound whose
// only trust anchor is our DS answers TXT, NODATA and non-existent names of
// the zone with AD; with a wrong anchor it answers SERVFAIL; delv says
// "fully validated"; Pebble, resolving through that Unbound, issues an
// apex and wildcard certificate through the customer's CNAME; and a key
// rollover keeps validation unbroken at every step.
func TestDNSSEC(t *testing.T) {
	s := e2e.Start(t, e2e.Options{DNSSEC: true})
	zone := e2e.Zone + "."
	t.Logf("trust anchor: %s", s.DS)

	// A challenge account with a live value (the acme-dns API).
	sub, value := registerAndUpdate(t, s)
	name := sub + "." + zone

	// 1. The validating resolver: AD on positive and negative answers.
	checks := []struct {
		what  string
		qname string
		qtype uint16
		// answers is the number of records of qtype in the answer.
		answers int
	}{
		{"apex SOA", zone, dns.TypeSOA, 1},
		{"challenge TXT", name, dns.TypeTXT, 1},
		{"NODATA at the subdomain", name, dns.TypeA, 0},
		{"NODATA at the apex", zone, dns.TypeMX, 0},
		{"a name that does not exist", "nope." + zone, dns.TypeTXT, 0},
		{"a name below a subdomain", "x." + name, dns.TypeTXT, 0},
	}
	validates := func(t *testing.T, resolver, step string) {
		t.Helper()
		for _, c := range checks {
			r := queryDO(t, resolver, c.qname, c.qtype)
			got := 0
			for _, rr := range r.Answer {
				if rr.Header().Rrtype == c.qtype {
					got++
				}
			}
			// Compact denial answers a name that does not exist NOERROR
			// (RFC 9824); a resolver that knows NXNAME turns it into
			// NXDOMAIN. Either is a validated denial.
			okRcode := r.Rcode == dns.RcodeSuccess || (c.answers == 0 && r.Rcode == dns.RcodeNameError)
			if !okRcode || !r.AuthenticatedData || got != c.answers {
				t.Errorf("%s: %s %s: rcode %s AD %t, %d answers; want validated (AD) with %d\n%v",
					step, c.what, c.qname, dns.RcodeToString[r.Rcode], r.AuthenticatedData, got, c.answers, r)
			}
		}
	}
	validates(t, s.Resolver.Addr, "signed zone")
	for _, c := range checks {
		t.Logf("through the validating unbound:\n%v", queryDO(t, s.Resolver.Addr, c.qname, c.qtype))
	}
	r := queryDO(t, s.Resolver.Addr, name, dns.TypeTXT)
	if len(r.Answer) == 0 || !strings.Contains(r.Answer[0].String(), value) {
		t.Errorf("challenge TXT through the resolver: %v, want %s", r.Answer, value)
	}
	t.Logf("validated TXT through unbound:\n%v", r)

	// 2. delv, validating by itself against our DS.
	anchors := writeAnchors(t, s.DS)
	for _, q := range [][]string{{name, "TXT"}, {zone, "SOA"}, {"nope." + zone, "TXT"}, {name, "A"}} {
		out := delv(t, s.Resolver.Addr, anchors, q[0], q[1])
		t.Logf("delv %s %s:\n%s", q[0], q[1], out)
		if !strings.Contains(out, "fully validated") {
			t.Errorf("delv %s %s: not fully validated:\n%s", q[0], q[1], out)
		}
	}

	// 3. A wrong trust anchor (another key's DS): the answers are bogus.
	wrong := harness.StartUnboundWith(t, harness.UnboundOptions{
		Stubs:        map[string]string{e2e.Zone: s.DNSAddr},
		TrustAnchors: []string{wrongDS(t, s.DS)},
	})
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{zone, dns.TypeSOA}, {name, dns.TypeTXT}, {"nope." + zone, dns.TypeTXT}} {
		if r := queryDO(t, wrong.Addr, q.name, q.qtype); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("wrong anchor: %s %s: %s, want SERVFAIL", q.name, dns.TypeToString[q.qtype], dns.RcodeToString[r.Rcode])
		}
	}

	// 4. Pebble validates through the signing resolver: apex + wildcard.
	out, code := s.CLI("issue", "--cert-name", "signed", "--no-wait", "-d", "example.test", "-d", "*.example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d\n%s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	c := waitActive(t, s, "signed", 90*time.Second)
	checkDeployed(t, s, c, []string{"example.test", "*.example.test"})
	if n := s.PebbleIssued(); n != 1 {
		t.Errorf("Pebble issued %d certificates, want 1", n)
	}

	// 5. Rollover: validation holds at every step for the anchor the
	// parent holds then (old DS, both, new DS).
	oldDS := s.DS
	step := func(n int) string {
		out, code := s.CLI("dnssec", "rollover", "--force")
		t.Logf("rollover step %d:\n%s", n, out)
		if code != 0 {
			t.Fatalf("rollover step %d: exit %d", n, code)
		}
		return out
	}
	waitKeys := func(n int) {
		harness.Eventually(t, 20*time.Second, 200*time.Millisecond, fmt.Sprintf("%d DNSKEYs served", n), func() error {
			r := queryDO(t, s.DNSAddr, zone, dns.TypeDNSKEY)
			keys := 0
			for _, rr := range r.Answer {
				if rr.Header().Rrtype == dns.TypeDNSKEY {
					keys++
				}
			}
			if keys != n {
				return fmt.Errorf("%d DNSKEYs", keys)
			}
			return nil
		})
	}
	step(1) // pre-publish
	waitKeys(2)
	out, code = s.CLI("dnssec", "ds")
	ds := e2e.DSRecords(out)
	if code != 0 || len(ds) != 2 {
		t.Fatalf("dnssec ds after pre-publishing: exit %d, %d DS records, want 2:\n%s", code, len(ds), out)
	}
	newDS := ds[1]
	if ds[0] != oldDS {
		t.Fatalf("dnssec ds lists %s first, want the active %s", ds[0], oldDS)
	}
	both := harness.StartUnboundWith(t, harness.UnboundOptions{Stubs: map[string]string{e2e.Zone: s.DNSAddr}, TrustAnchors: []string{oldDS, newDS}})
	validates(t, s.Resolver.Addr, "pre-published, old DS")
	validates(t, both.Addr, "pre-published, both DS")

	before := signerOf(t, s.DNSAddr, zone)
	step(2) // switch
	harness.Eventually(t, 20*time.Second, 200*time.Millisecond, "the new key signs", func() error {
		if tag := signerOf(t, s.DNSAddr, zone); tag == before {
			return fmt.Errorf("SOA still signed by %d", tag)
		}
		return nil
	})
	next := harness.StartUnboundWith(t, harness.UnboundOptions{Stubs: map[string]string{e2e.Zone: s.DNSAddr}, TrustAnchors: []string{newDS}})
	validates(t, s.Resolver.Addr, "switched, old DS")
	validates(t, both.Addr, "switched, both DS")
	validates(t, next.Addr, "switched, new DS")

	step(3) // withdraw
	waitKeys(1)
	validates(t, both.Addr, "withdrawn, both DS")
	validates(t, next.Addr, "withdrawn, new DS")
	if out := delv(t, next.Addr, writeAnchors(t, newDS), name, "TXT"); !strings.Contains(out, "fully validated") {
		t.Errorf("after the rollover delv does not validate:\n%s", out)
	}
}

// queryDO asks addr with RD and DO set (TCP if truncated).
func queryDO(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, true)
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s %s via %s: %v", name, dns.TypeToString[qtype], addr, err)
		}
		if !r.Truncated {
			return r
		}
	}
	t.Fatalf("%s: truncated over TCP", name)
	return nil
}

// signerOf is the key tag of the SOA's RRSIG, straight from delegated.
func signerOf(t *testing.T, addr, zone string) uint16 {
	t.Helper()
	r := queryDO(t, addr, zone, dns.TypeSOA)
	for _, rr := range r.Answer {
		if sig, ok := rr.(*dns.RRSIG); ok {
			return sig.KeyTag
		}
	}
	t.Fatalf("SOA not signed: %v", r)
	return 0
}

func writeAnchors(t *testing.T, ds ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("trust-anchors {\n")
	for _, d := range ds {
		f := strings.Fields(d) // owner TTL IN DS tag alg digesttype digest
		fmt.Fprintf(&b, "  %q static-ds %s %s %s %q;\n", f[0], f[4], f[5], f[6], strings.Join(f[7:], ""))
	}
	b.WriteString("};\n")
	path := filepath.Join(t.TempDir(), "anchors.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// delv validates name/qtype itself, through the resolver at addr, with the
// anchors file as its only trust anchors.
func delv(t *testing.T, addr, anchors, name, qtype string) string {
	t.Helper()
	bin := harness.RequireTool(t, "delv", harness.HintDelv)
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "@"+host, "-p", port, "-a", anchors, "+root="+e2e.Zone, name, qtype).CombinedOutput()
	return string(out)
}

// wrongDS is ds with another digest: a trust anchor no key of ours matches.
func wrongDS(t *testing.T, ds string) string {
	t.Helper()
	f := strings.Fields(ds)
	digest := []byte(strings.Join(f[7:], ""))
	if digest[0] == 'A' {
		digest[0] = 'B'
	} else {
		digest[0] = 'A'
	}
	return strings.Join(append(f[:7], string(digest)), " ")
}

// registerAndUpdate registers an acme-dns account and sets one value.
func registerAndUpdate(t *testing.T, s *e2e.Stack) (sub, value string) {
	t.Helper()
	resp, err := http.Post(s.APIURL+"/register", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var acct struct{ Username, Password, Subdomain string }
	if err := json.NewDecoder(resp.Body).Decode(&acct); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %v", resp.StatusCode, err)
	}
	value = strings.Repeat("S", 43)
	body, _ := json.Marshal(map[string]string{"subdomain": acct.Subdomain, "txt": value})
	req, err := http.NewRequest(http.MethodPost, s.APIURL+"/update", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-User", acct.Username)
	req.Header.Set("X-Api-Key", acct.Password)
	up, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	up.Body.Close()
	if up.StatusCode != http.StatusOK {
		t.Fatalf("update: %d", up.StatusCode)
	}
	return acct.Subdomain, value
}
