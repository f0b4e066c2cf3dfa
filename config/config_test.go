package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestRepoConfigIsValid(t *testing.T) {
	c, err := Load("../config.toml")
	if err != nil {
		t.Fatalf("the repository's config.toml must load: %v", err)
	}
	if c.Zone.Domain != "auth.example.org." {
		t.Errorf("zone %q", c.Zone.Domain)
	}
	if got := c.DNS.Listen; len(got) != 1 || got[0] != "127.0.0.1:5053" {
		t.Errorf("dns.listen %v", got)
	}
	if got := c.API.Listen; len(got) != 1 || got[0] != "127.0.0.1:8053" {
		t.Errorf("api.listen %v", got)
	}
	abs, _ := filepath.Abs("../delegated.db")
	if c.Store.Driver != "sqlite3" || c.Store.DSN != abs {
		t.Errorf("store %s %s, want sqlite3 %s (relative to the config's folder)", c.Store.Driver, c.Store.DSN, abs)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`[zone]
domain = "Auth.Example.ORG"
`), "/etc/delegated/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"domain", c.Zone.Domain, "auth.example.org."},
		{"nsname", c.Zone.NSName, "auth.example.org."},
		{"nsadmin", c.Zone.NSAdmin, "hostmaster.auth.example.org."},
		{"txt_ttl", *c.Zone.TXTTTL, uint32(1)},
		{"soa_minimum", *c.Zone.SOAMinimum, uint32(60)},
		{"dns.listen", strings.Join(c.DNS.Listen, ","), "127.0.0.1:5053"},
		{"api.listen", strings.Join(c.API.Listen, ","), "127.0.0.1:8053"},
		{"bcrypt_cost", c.API.BcryptCost, 10},
		{"driver", c.Store.Driver, "sqlite3"},
		{"dsn", c.Store.DSN, "/etc/delegated/delegated.db"},
		{"per_account", c.Values.PerAccount, 4},
		{"lifetime", c.Values.Lifetime.Duration, 24 * time.Hour},
		{"log.format", c.Log.Format, "text"},
		{"log.level", c.Log.Level, "info"},
		{"dns.updates", c.DNS.Updates, "tsig"},
		{"dns.tsig_kek_file", c.DNS.TSIGKEKFile, "/etc/delegated/tsig.kek"},
		{"dns.update_failures_per_minute", c.DNS.UpdateFailuresPerMinute, 10},
		{"dnssec", c.Zone.DNSSEC, false},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestRecords(t *testing.T) {
	c, err := Parse([]byte(`[zone]
domain = "auth.example.org"
records = [
  "auth.example.org. A 192.0.2.1",
  "@ AAAA 2001:db8::1",
  "ns2 300 A 192.0.2.2",
  "auth.example.org. CAA 0 issue \"letsencrypt.org\"",
  "auth.example.org. TXT \"Mixed Case Kept\"",
]`), "/x/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	rrs := c.Zone.ParsedRecords
	if len(rrs) != 5 {
		t.Fatalf("%d records", len(rrs))
	}
	if rrs[1].Header().Name != "auth.example.org." || rrs[1].Header().Rrtype != dns.TypeAAAA {
		t.Errorf("@ not resolved against the zone: %v", rrs[1])
	}
	if rrs[2].Header().Name != "ns2.auth.example.org." || rrs[2].Header().Ttl != 300 {
		t.Errorf("relative owner or TTL: %v", rrs[2])
	}
	if rrs[0].Header().Ttl != 3600 {
		t.Errorf("default TTL %d", rrs[0].Header().Ttl)
	}
	if txt := rrs[4].(*dns.TXT); txt.Txt[0] != "Mixed Case Kept" {
		t.Errorf("case not kept: %q", txt.Txt)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, file, key, hint string }{
		{"unknown top-level key", "zone2 = 1\n[zone]\ndomain = \"a.test\"", "zone2", "unknown key"},
		{"unknown nested key", "[zone]\ndomain = \"a.test\"\nnsnmae = \"x\"", "zone.nsnmae", "unknown key"},
		{"missing domain", "[zone]\n", "zone.domain", "missing"},
		{"root domain", "[zone]\ndomain = \".\"", "zone.domain", "root"},
		{"bad domain", "[zone]\ndomain = \"a..b\"", "zone.domain", "not a domain"},
		{"record syntax", "[zone]\ndomain = \"a.test\"\nrecords = [\"a.test. A 300.1.1.1\"]", "zone.records[0]", "zone-file syntax"},
		{"record type", "[zone]\ndomain = \"a.test\"\nrecords = [\"a.test. BOGUS x\"]", "zone.records[0]", ""},
		{"record outside zone", "[zone]\ndomain = \"a.test\"\nrecords = [\"ok.a.test. A 127.0.0.1\", \"b.test. A 127.0.0.1\"]", "zone.records[1]", "outside the zone"},
		{"SOA record", "[zone]\ndomain = \"a.test\"\nrecords = [\"a.test. SOA a.test. h.a.test. 1 2 3 4 5\"]", "zone.records[0]", "SOA"},
		{"two records in one line", "[zone]\ndomain = \"a.test\"\nrecords = [\"a.test. A 127.0.0.1\\na.test. A 127.0.0.2\"]", "zone.records[0]", "one per line"},
		{"CNAME at apex", "[zone]\ndomain = \"a.test\"\nrecords = [\"a.test. CNAME b.test.\"]", "zone.records[0]", "apex"},
		{"dns listen no port", "[zone]\ndomain = \"a.test\"\n[dns]\nlisten = [\"127.0.0.1\"]", "dns.listen[0]", "IP:port"},
		{"dns listen hostname", "[zone]\ndomain = \"a.test\"\n[dns]\nlisten = [\"localhost:53\"]", "dns.listen[0]", "IP:port"},
		{"dns listen port 0", "[zone]\ndomain = \"a.test\"\n[dns]\nlisten = [\"127.0.0.1:0\"]", "dns.listen[0]", "no port"},
		{"dns updates", "[zone]\ndomain = \"a.test\"\n[dns]\nupdates = \"on\"", "dns.updates", "\"off\""},
		{"dns update failures", "[zone]\ndomain = \"a.test\"\n[dns]\nupdate_failures_per_minute = -1", "dns.update_failures_per_minute", "1 to 1000000"},
		{"api listen", "[zone]\ndomain = \"a.test\"\n[api]\nlisten = [\":8053x\"]", "api.listen[0]", "IP:port"},
		{"bcrypt cost", "[zone]\ndomain = \"a.test\"\n[api]\nbcrypt_cost = 4", "api.bcrypt_cost", "10 to 16"},
		{"driver", "[zone]\ndomain = \"a.test\"\n[store]\ndriver = \"mysql\"", "store.driver", "sqlite3"},
		{"per_account", "[zone]\ndomain = \"a.test\"\n[values]\nper_account = 1", "values.per_account", "2 to 100"},
		{"lifetime syntax", "[zone]\ndomain = \"a.test\"\n[values]\nlifetime = \"a day\"", "", "duration"},
		{"lifetime short", "[zone]\ndomain = \"a.test\"\n[values]\nlifetime = \"1s\"", "values.lifetime", "at least"},
		{"log format", "[zone]\ndomain = \"a.test\"\n[log]\nformat = \"xml\"", "log.format", "json"},
		{"wrong type", "[zone]\ndomain = 5", "", "domain"},
		{"negative ttl", "[zone]\ndomain = \"a.test\"\ntxt_ttl = -1", "", "txt_ttl"},
		{"dnssec not a bool", "[zone]\ndomain = \"a.test\"\ndnssec = \"yes\"", "", "dnssec"},
		{"signer's records with dnssec", "[zone]\ndomain = \"a.test\"\ndnssec = true\nrecords = [\"a.test. DNSKEY 257 3 13 aocTrqnPysm1H/sFjULuCzweNjUTLDYKJfoiEN1IALjX9WpZzjxMEjeuL4iipKa5jwklC/PBpF18ySU01Ry5kA==\"]", "zone.records[0]", "made by the signer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.file), "/etc/delegated/config.toml")
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "/etc/delegated/config.toml: ") {
				t.Errorf("error does not name the file: %s", msg)
			}
			var ce *Error
			if c.key != "" && (!errors.As(err, &ce) || ce.Key != c.key) {
				t.Errorf("error key: %s, want %s", msg, c.key)
			}
			if !strings.Contains(msg, c.hint) {
				t.Errorf("error %q lacks %q", msg, c.hint)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err %v", err)
	}
}

func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("../config.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("[zone]\ndomain = \"a.test\"\nrecords = [\"@ A 127.0.0.1\"]"))
	f.Add([]byte("[zone\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "/fuzz/config.toml")
		if err != nil {
			return
		}
		// An accepted config is complete: every default filled in.
		if c.Zone.Domain == "" || c.Zone.TXTTTL == nil || len(c.DNS.Listen) == 0 || c.Store.DSN == "" || c.Values.PerAccount < 2 {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
	})
}
