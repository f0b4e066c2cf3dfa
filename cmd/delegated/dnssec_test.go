package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/e2e/harness"
)

func dnssecConfig(t *testing.T, dnssec bool) string {
	t.Helper()
	dir := t.TempDir()
	cfg := "[zone]\ndomain = \"auth.example.org\"\n"
	if dnssec {
		cfg += "dnssec = true\n"
	}
	cfg += "[store]\ndsn = \"delegated.db\"\n"
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// dsOf parses the DS and DNSKEY lines `dnssec ds` printed.
func dsOf(t *testing.T, out string) ([]*dns.DS, []*dns.DNSKEY) {
	t.Helper()
	var (
		ds   []*dns.DS
		keys []*dns.DNSKEY
	)
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		switch r := rr.(type) {
		case *dns.DS:
			ds = append(ds, r)
		case *dns.DNSKEY:
			keys = append(keys, r)
		}
	}
	return ds, keys
}

// TestDNSSECDS: the DS printed is the SHA-256 digest of the DNSKEY printed
// (algorithm 13, SEP), stable across runs, for the parent of the zone.
func TestDNSSECDS(t *testing.T) {
	cfg := dnssecConfig(t, true)
	code, out, errOut := runCmd(t, "dnssec", "ds", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	ds, keys := dsOf(t, out)
	if len(ds) != 1 || len(keys) != 1 {
		t.Fatalf("%d DS, %d DNSKEY:\n%s", len(ds), len(keys), out)
	}
	want := keys[0].ToDS(dns.SHA256)
	if ds[0].String() != want.String() || ds[0].Algorithm != 13 || ds[0].DigestType != dns.SHA256 || keys[0].Flags != 257 || ds[0].Hdr.Name != "auth.example.org." {
		t.Errorf("DS %v does not match DNSKEY %v", ds[0], keys[0])
	}
	// Flags before the subcommand work too; the key is the same.
	code, again, _ := runCmd(t, "dnssec", "--config", cfg, "ds")
	if code != 0 || again != out {
		t.Errorf("second run: exit %d\n%s\nwant\n%s", code, again, out)
	}
	if strings.Contains(out+errOut, "PRIVATE") {
		t.Errorf("output mentions private key material")
	}

	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"dnssec"}, 2, "expected a subcommand"},
		{[]string{"dnssec", "sign", "--config", cfg}, 2, "expected a subcommand"},
		{[]string{"dnssec", "ds", "--config", dnssecConfig(t, false)}, 2, "set [zone] dnssec = true"},
	} {
		code, _, errOut := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%v: exit %d %q, want %d %q", tc.args, code, errOut, tc.code, tc.stderr)
		}
	}
}

// TestDNSSECRollover walks the timeline: each step refuses to run before
// its wait (exit 1, nothing changed) unless forced, and `dnssec ds` follows
// the keys the parent should hold.
func TestDNSSECRollover(t *testing.T) {
	cfg := dnssecConfig(t, true)
	_, out, _ := runCmd(t, "dnssec", "ds", "--config", cfg)
	first, _ := dsOf(t, out)

	code, out, errOut := runCmd(t, "dnssec", "rollover", "--config", cfg)
	if code != 0 || !strings.Contains(out, "step 1 of 3 done") {
		t.Fatalf("step 1: exit %d\n%s%s", code, out, errOut)
	}
	_, out, _ = runCmd(t, "dnssec", "ds", "--config", cfg)
	both, _ := dsOf(t, out)
	if len(both) != 2 || both[0].String() != first[0].String() {
		t.Fatalf("after pre-publishing: %v, want the old DS then the new", both)
	}

	code, out, errOut = runCmd(t, "dnssec", "rollover", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "too early to switch keys") {
		t.Fatalf("switch at once: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, "dnssec", "rollover", "--status", "--config", cfg)
	if code != 0 || !strings.Contains(out, "next: step 2 of 3") || !strings.Contains(out, "published since") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, out, errOut = runCmd(t, "dnssec", "rollover", "--force", "--config", cfg)
	if code != 0 || !strings.Contains(out, "step 2 of 3 done") || !strings.Contains(out, both[1].String()) {
		t.Fatalf("forced switch: exit %d\n%s%s", code, out, errOut)
	}
	_, out, _ = runCmd(t, "dnssec", "ds", "--config", cfg)
	if ds, _ := dsOf(t, out); len(ds) != 1 || ds[0].String() != both[1].String() {
		t.Fatalf("after the switch: %v, want only the new DS", ds)
	}

	code, _, errOut = runCmd(t, "dnssec", "rollover", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "too early to withdraw") {
		t.Fatalf("withdraw at once: exit %d %s", code, errOut)
	}
	code, out, _ = runCmd(t, "dnssec", "rollover", "--force", "--config", cfg)
	if code != 0 || !strings.Contains(out, "step 3 of 3 done") {
		t.Fatalf("forced withdraw: exit %d\n%s", code, out)
	}
	_, out, _ = runCmd(t, "dnssec", "ds", "--config", cfg)
	if ds, _ := dsOf(t, out); len(ds) != 1 || ds[0].String() != both[1].String() {
		t.Fatalf("after the rollover: %v, want the new DS", ds)
	}
}

// TestDNSSECSharedByInstances: two instances on one PostgreSQL database
// with DNSSEC on: they serve the same single key, so a
// signature from one verifies with the DNSKEY from the other, and a DNS
// cookie handed out by one is valid (echoed) at the other.
func TestDNSSECSharedByInstances(t *testing.T) {
	dsn := harness.PostgresSchema(t, "k_")
	var cfgs []*config.Config
	for range 2 {
		cfg, err := config.Load(writeConfig(t, t.TempDir(), 1, 1))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DNS.Listen = []string{"127.0.0.1:0"}
		cfg.API.Listen = []string{"127.0.0.1:0"}
		cfg.Store.Driver, cfg.Store.DSN = "postgres", dsn
		cfg.Zone.DNSSEC = true
		cfgs = append(cfgs, cfg)
	}
	// Two instances starting at once create one key between them
	// (store.TestDNSSECKeyLifecycle); here the second finds the first's.
	runs := []*running{startServeConfig(t, cfgs[0]), startServeConfig(t, cfgs[1])}
	signed := func(addr string, qtype uint16, cookie string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("auth.example.test.", qtype)
		m.SetEdns0(1232, true)
		if cookie != "" {
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie}}
		}
		r, err := dns.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	keysA := signed(runs[0].dns, dns.TypeDNSKEY, "")
	keysB := signed(runs[1].dns, dns.TypeDNSKEY, "")
	if len(keysA.Answer) != 2 || len(keysB.Answer) != 2 || keysA.Answer[0].String() != keysB.Answer[0].String() {
		t.Fatalf("the instances serve different keys:\n%v\n%v", keysA.Answer, keysB.Answer)
	}
	key := keysA.Answer[0].(*dns.DNSKEY)
	soa := signed(runs[1].dns, dns.TypeSOA, "")
	if len(soa.Answer) != 2 {
		t.Fatalf("SOA from B not signed: %v", soa)
	}
	if err := soa.Answer[1].(*dns.RRSIG).Verify(key, soa.Answer[:1]); err != nil {
		t.Errorf("B's signature does not verify with A's DNSKEY: %v", err)
	}

	// Both read the cookie secret from the store at start; a cookie from
	// A is valid at B.
	first := signed(runs[0].dns, dns.TypeSOA, "0102030405060708")
	var cookie string
	for _, o := range first.IsEdns0().Option {
		if c, ok := o.(*dns.EDNS0_COOKIE); ok {
			cookie = c.Cookie
		}
	}
	if len(cookie) != 48 {
		t.Fatalf("no server cookie from A: %v", first.IsEdns0())
	}
	again := signed(runs[1].dns, dns.TypeSOA, cookie)
	for _, o := range again.IsEdns0().Option {
		if c, ok := o.(*dns.EDNS0_COOKIE); ok && c.Cookie != cookie {
			t.Errorf("B replaced A's fresh cookie %s with %s: not valid there", cookie, c.Cookie)
		}
	}
}
