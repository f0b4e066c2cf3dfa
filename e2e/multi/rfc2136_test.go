package multi

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

// rfc2136Config is a plain two-instance setup (no issuer): both instances
// share the database and the key-encryption key file, as the README asks,
// and confirm = "all", so an acknowledged write is served everywhere.
const rfc2136Config = `[zone]
domain = "auth.example.test"
nsname = "ns.auth.example.test"
nsadmin = "hostmaster.example.test"

[dns]
listen = [%q]
tsig_kek_file = %q

[api]
listen = [%q]

[store]
driver = "postgres"
dsn = %q
confirm = "all"
`

var tsigKeyClause = regexp.MustCompile(`(?s)key "([^"]+)" \{\s*algorithm hmac-sha256;\s*secret "([^"]+)";\s*\};`)

// TestRFC2136AcrossInstances: a signed UPDATE to one instance is answered
// by the other as soon as it is acknowledged; a key created or removed with
// the CLI reaches both instances' in-memory key sets.
func TestRFC2136AcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two delegated instances on PostgreSQL")
	}
	dsn, _ := freshDatabase(t)
	bin := filepath.Join(t.TempDir(), "delegated")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/delegated/delegated/cmd/delegated").CombinedOutput(); err != nil {
		t.Fatalf("go build delegated: %v\n%s", err, out)
	}
	kek := filepath.Join(t.TempDir(), "tsig.kek")
	var cfgs, dnsAddrs []string
	for n := range 2 {
		dir := t.TempDir()
		addr := harness.FreeAddr(t)
		cfg := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, rfc2136Config, addr, kek, harness.FreeAddr(t), dsn), 0o600); err != nil {
			t.Fatal(err)
		}
		p := harness.StartProcess(t, harness.ProcessOptions{
			Name: fmt.Sprintf("delegated-%d", n), Path: bin, Args: []string{"serve", "--config", cfg}, Dir: dir, GoStacks: true,
		})
		if err := p.WaitReady(0, harness.DNSReady(addr, "auth.example.test.", dns.TypeSOA)); err != nil {
			t.Fatalf("instance %d: %v", n, err)
		}
		cfgs, dnsAddrs = append(cfgs, cfg), append(dnsAddrs, addr)
	}

	out, err := exec.Command(bin, "account", "add", "--config", cfgs[0], "--tsig", "--domain", "example.test").CombinedOutput()
	if err != nil {
		t.Fatalf("account add --tsig: %v\n%s", err, out)
	}
	m := tsigKeyClause.FindStringSubmatch(string(out))
	user := regexp.MustCompile(`"username":"([^"]+)"`).FindStringSubmatch(string(out))
	if m == nil || user == nil {
		t.Fatalf("no key clause or username in:\n%s", out)
	}
	keyName, secret := m[1], m[2]
	own := keyName // <subdomain>.<zone>.

	update := func(addr string, build func(*dns.Msg)) *dns.Msg {
		t.Helper()
		msg := new(dns.Msg)
		msg.SetUpdate("auth.example.test.")
		build(msg)
		msg.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Timeout: 5 * time.Second, TsigSecret: map[string]string{keyName: secret}}
		r, _, err := c.Exchange(msg, addr)
		if r == nil {
			t.Fatalf("update to %s: %v", addr, err)
		}
		return r
	}
	txt := func(v string) []dns.RR {
		return []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: own, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}}}
	}
	served := func(addr string) []string {
		t.Helper()
		r, err := harness.Query(addr, own, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		var vs []string
		for _, rr := range r.Answer {
			vs = append(vs, strings.Join(rr.(*dns.TXT).Txt, ""))
		}
		slices.Sort(vs)
		return vs
	}

	// The key was written through instance 0's config by the CLI; each
	// instance learns it from the store (the follower), never per update.
	v1, v2 := strings.Repeat("a", 43), strings.Repeat("b", 43)
	harness.Eventually(t, 10*time.Second, 200*time.Millisecond, "instance 1 knows the new key", func() error {
		r := update(dnsAddrs[1], func(m *dns.Msg) { m.Insert(txt(v1)) })
		if r.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("update via instance 1: %s", dns.RcodeToString[r.Rcode])
		}
		return nil
	})
	// Acknowledged on 1, answered by 0 at once, and the other way round.
	if got := served(dnsAddrs[0]); !slices.Equal(got, []string{v1}) {
		t.Fatalf("instance 0 serves %q right after instance 1 acknowledged, want %q", got, []string{v1})
	}
	if r := update(dnsAddrs[0], func(m *dns.Msg) { m.Remove(txt(v1)); m.Insert(txt(v2)) }); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update via instance 0: %s", dns.RcodeToString[r.Rcode])
	}
	if got := served(dnsAddrs[1]); !slices.Equal(got, []string{v2}) {
		t.Fatalf("instance 1 serves %q right after instance 0 acknowledged, want %q", got, []string{v2})
	}

	// Removing the key: both instances refuse it (BADKEY) once they heard
	// (a notification away).
	if out, err := exec.Command(bin, "account", "tsig", "--config", cfgs[1], "--username", user[1], "--remove").CombinedOutput(); err != nil {
		t.Fatalf("account tsig --remove: %v\n%s", err, out)
	}
	for n, addr := range dnsAddrs {
		harness.Eventually(t, 10*time.Second, 200*time.Millisecond, fmt.Sprintf("instance %d drops the key", n), func() error {
			// A prerequisite-only update probes the key without writing.
			r := update(addr, func(m *dns.Msg) { m.NameUsed(txt("")) })
			if r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadKey {
				return fmt.Errorf("rcode %s, TSIG %v", dns.RcodeToString[r.Rcode], r.IsTsig())
			}
			return nil
		})
	}
	if got := served(dnsAddrs[0]); !slices.Equal(got, []string{v2}) {
		t.Fatalf("after the key's removal instance 0 serves %q", got)
	}
}
