package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/config"
)

var (
	printedKey = regexp.MustCompile(`(?s)key "([^"]+)" \{\s*algorithm (hmac-sha(?:256|512));\s*secret "([^"]+)";\s*\};`)
	printedEnv = regexp.MustCompile(`(?m)^RFC2136_(\w+)=(.*)$`)
)

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, nil, &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

// signedAdd sends an UPDATE adding v at owner, signed with the printed key.
func signedAdd(t *testing.T, addr, zone, owner, keyName, alg, secret, v string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}}})
	m.SetTsig(keyName, dns.Fqdn(alg), 300, time.Now().Unix())
	c := &dns.Client{Timeout: 3 * time.Second, TsigSecret: map[string]string{keyName: secret}}
	r, _, err := c.Exchange(m, addr)
	if r == nil {
		t.Fatalf("update: %v", err)
	}
	return r
}

// TestAccountTSIG: account add --tsig prints the BIND clause, the RFC2136_*
// lines and one CNAME, and the key signs updates at once on the running
// daemon; account tsig replaces it (hmac-sha512, the old secret fails) and
// --remove removes it (BADKEY); the database holds no secret.
func TestAccountTSIG(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeExtConfig(t, dir, `registration = "closed"`)
	// The probes below may fail a few signatures while the daemon has
	// not yet read a change; the default limit (10 a minute) would then
	// refuse them unchecked.
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, bytes.Replace(b, []byte("\n[api]\n"), []byte("update_failures_per_minute = 1000\n\n[api]\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startExtDaemon(t, cfgPath)
	out, errOut, code := runCLI(t, "account", "add", "--config", cfgPath, "--tsig", "--domain", "example.com", "--nameserver", "ns1.auth.example.test:53")
	// On a loaded machine the daemon may not answer /sync in time (a
	// warning); it then reads the key from the store within a second.
	if code != 0 || errOut != "" && !strings.Contains(errOut, "picks the account up from the store") {
		t.Fatalf("account add --tsig: exit %d: %s", code, errOut)
	}
	k := printedKey.FindStringSubmatch(out)
	if k == nil {
		t.Fatalf("no key clause:\n%s", out)
	}
	keyName, alg, secret := k[1], k[2], k[3]
	if strings.Count(out, "_acme-challenge.example.com. CNAME "+keyName+"\n") != 1 || alg != "hmac-sha256" {
		t.Fatalf("want one CNAME to %s and hmac-sha256:\n%s", keyName, out)
	}
	env := map[string]string{}
	for _, m := range printedEnv.FindAllStringSubmatch(out, -1) {
		env[m[1]] = m[2]
	}
	if env["NAMESERVER"] != "ns1.auth.example.test:53" || env["TSIG_KEY"] != keyName || env["TSIG_SECRET"] != secret || env["TSIG_ALGORITHM"] != "hmac-sha256." {
		t.Fatalf("environment lines %v", env)
	}
	user := regexp.MustCompile(`"username":"([^"]+)"`).FindStringSubmatch(out)[1]
	v := strings.Repeat("x", 43)
	eventuallyRcode(t, "the new key", func() *dns.Msg {
		return signedAdd(t, d.dns, "auth.example.test.", keyName, keyName, alg, secret, v)
	}, dns.RcodeSuccess, 0)

	// The KEK file is 0600 and the database holds no secret.
	if fi, err := os.Stat(filepath.Join(dir, "tsig.kek")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("KEK file: %v %v", fi, err)
	}
	db, err := sql.Open("sqlite3", filepath.Join(dir, "ext.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sealed string
	if err := db.QueryRow(`SELECT sealed_secret FROM tsig_keys`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, secret) {
		t.Fatal("secret stored in the clear")
	}

	out, errOut, code = runCLI(t, "account", "tsig", "--config", cfgPath, "--username", user, "--algorithm", "hmac-sha512", "--domain", "example.com")
	if code != 0 {
		t.Fatalf("account tsig: exit %d: %s", code, errOut)
	}
	k2 := printedKey.FindStringSubmatch(out)
	if k2 == nil || k2[1] != keyName || k2[2] != "hmac-sha512" || k2[3] == secret || !strings.Contains(out, "RFC2136_TSIG_ALGORITHM=hmac-sha512.\n") {
		t.Fatalf("replaced key:\n%s", out)
	}
	// The daemon polls SQLite for the CLI's write (PollInterval, 1 s).
	eventuallyRcode(t, "the replaced key", func() *dns.Msg {
		return signedAdd(t, d.dns, "auth.example.test.", keyName, keyName, "hmac-sha512", k2[3], v)
	}, dns.RcodeSuccess, 0)
	if r := signedAdd(t, d.dns, "auth.example.test.", keyName, keyName, alg, secret, v); r.Rcode != dns.RcodeNotAuth {
		t.Fatalf("old key after replacement: %s", dns.RcodeToString[r.Rcode])
	}

	if _, errOut, code := runCLI(t, "account", "tsig", "--config", cfgPath, "--username", user, "--remove"); code != 0 {
		t.Fatalf("account tsig --remove: exit %d: %s", code, errOut)
	}
	if _, _, code := runCLI(t, "account", "tsig", "--config", cfgPath, "--username", user, "--remove"); code != 1 {
		t.Fatalf("second --remove: exit %d, want 1", code)
	}
	if _, _, code := runCLI(t, "account", "tsig", "--config", cfgPath, "--username", "nobody"); code != 1 {
		t.Fatalf("unknown account: exit %d, want 1", code)
	}
	if _, _, code := runCLI(t, "account", "tsig", "--config", cfgPath, "--username", user, "--algorithm", "hmac-md5"); code != 2 {
		t.Fatalf("hmac-md5: exit %d, want 2", code)
	}
	eventuallyRcode(t, "the removed key", func() *dns.Msg {
		return signedAdd(t, d.dns, "auth.example.test.", keyName, keyName, "hmac-sha512", k2[3], v)
	}, dns.RcodeNotAuth, dns.RcodeBadKey)
}

// eventuallyRcode retries send until its reply has rcode (and TSIG error
// tsigErr when not 0), for at most 10 s.
func eventuallyRcode(t *testing.T, what string, send func() *dns.Msg, rcode int, tsigErr uint16) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := send()
		if r.Rcode == rcode && (tsigErr == 0 || r.IsTsig() != nil && r.IsTsig().Error == tsigErr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s, TSIG %v", what, dns.RcodeToString[r.Rcode], r.IsTsig())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestServeWithoutKEK: a key-encryption key that cannot be created (a
// read-only /etc, a typo) costs the updates, not the service: DNS answers,
// and an UPDATE is refused with BADKEY.
func TestServeWithoutKEK(t *testing.T) {
	cfg, err := config.Load(writeExtConfig(t, t.TempDir(), ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DNS.TSIGKEKFile = "/proc/no-such-dir/tsig.kek"
	r := startServeConfig(t, cfg)
	m := new(dns.Msg)
	m.SetQuestion("auth.example.test.", dns.TypeSOA)
	if reply, err := dns.Exchange(m, r.dns); err != nil || reply.Rcode != dns.RcodeSuccess {
		t.Fatalf("SOA: %v %v", reply, err)
	}
	reply := signedAdd(t, r.dns, "auth.example.test.", "k.auth.example.test.", "k.auth.example.test.", "hmac-sha256", "c2VjcmV0c2VjcmV0c2VjcmV0", strings.Repeat("x", 43))
	if reply.Rcode != dns.RcodeNotAuth || reply.IsTsig() == nil || reply.IsTsig().Error != dns.RcodeBadKey {
		t.Fatalf("update: %v", reply)
	}
}
