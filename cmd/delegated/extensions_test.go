package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nrdcg/goacmedns"
	"github.com/nrdcg/goacmedns/storage"
	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/httpapi"
)

// extDaemon is serve running in-process on the ports its config file names,
// so that CLI verbs reading the same file find it.
type extDaemon struct {
	*running
	cfgPath string
}

const extConfig = `
[zone]
domain = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
records = ["ns1.auth.example.test. A 127.0.0.1"]

[dns]
listen = ["127.0.0.1:%d"]

[api]
listen = ["127.0.0.1:%d"]
bcrypt_cost = 10
%s
[store]
dsn = "ext.db"
`

func writeExtConfig(t *testing.T, dir, apiExtra string) string {
	t.Helper()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, fmt.Appendf(nil, extConfig, freePort(t), freePort(t), apiExtra), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startExtDaemon(t *testing.T, cfgPath string) *extDaemon {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return &extDaemon{running: startServeConfig(t, cfg), cfgPath: cfgPath}
}

func extQuery(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	resp, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return resp
}

func extTXT(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out
}

func extCall(t *testing.T, method, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const testValue = "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"

// accountOutput is what `account add` printed, parsed.
type accountOutput struct {
	register    httpapi.Credentials
	legoFile    string // the lego storage JSON line
	certManager map[string]httpapi.Credentials
	cname       string
}

func runAccountAdd(t *testing.T, args ...string) accountOutput {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"account", "add"}, args...), nil, &stdout, &stderr); code != 0 {
		t.Fatalf("account add: exit %d: %s", code, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("account add warned: %s", stderr.String())
	}
	var out accountOutput
	var jsonLines []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		switch {
		case strings.HasPrefix(line, "{"):
			jsonLines = append(jsonLines, line)
		case strings.HasPrefix(line, "_acme-challenge."):
			out.cname = line
		}
	}
	if len(jsonLines) != 3 {
		t.Fatalf("want 3 JSON lines, got:\n%s", stdout.String())
	}
	if err := json.Unmarshal([]byte(jsonLines[0]), &out.register); err != nil {
		t.Fatal(err)
	}
	out.legoFile = jsonLines[1]
	if err := json.Unmarshal([]byte(jsonLines[2]), &out.certManager); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAccountAddWithDaemonRunning: the CLI writes the store from another
// process while the daemon runs; the daemon's DNS answers NODATA (the name
// exists) at once, and the printed credentials work with lego's storage
// reader and /update.
func TestAccountAddWithDaemonRunning(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeExtConfig(t, dir, `registration = "closed"`)
	d := startExtDaemon(t, cfgPath)
	out := runAccountAdd(t, "--config", cfgPath, "--domain", "*.Example.COM.", "--allow-from", "127.0.0.0/8")

	c := out.register
	if c.Fulldomain != c.Subdomain+".auth.example.test" || len(c.Password) != 40 || len(c.AllowFrom) != 1 {
		t.Fatalf("register JSON: %+v", c)
	}
	if want := "_acme-challenge.example.com. CNAME " + c.Fulldomain + "."; out.cname != want {
		t.Fatalf("CNAME line %q, want %q", out.cname, want)
	}
	if cm := out.certManager["example.com"]; cm.Username != c.Username || cm.Password != c.Password || cm.Subdomain != c.Subdomain {
		t.Fatalf("cert-manager JSON: %+v", out.certManager)
	}
	// lego reads its storage with nrdcg/goacmedns's file storage.
	legoPath := filepath.Join(dir, "lego-acme-dns.json")
	if err := os.WriteFile(legoPath, []byte(out.legoFile), 0o600); err != nil {
		t.Fatal(err)
	}
	acct, err := storage.NewFile(legoPath, 0o600).Fetch(context.Background(), "example.com")
	if err != nil {
		t.Fatalf("lego storage: %v", err)
	}
	want := goacmedns.Account{FullDomain: c.Fulldomain, SubDomain: c.Subdomain, Username: c.Username, Password: c.Password, ServerURL: "http://" + d.api}
	if acct != want {
		t.Fatalf("lego storage account %+v, want %+v", acct, want)
	}

	name := c.Subdomain + ".auth.example.test."
	if m := extQuery(t, d.dns, name, dns.TypeTXT); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Fatalf("new subdomain: rcode %s, %d answers; want NODATA", dns.RcodeToString[m.Rcode], len(m.Answer))
	}
	code, body := extCall(t, "POST", "http://"+d.api+"/update", map[string]string{"X-Api-User": acct.Username, "X-Api-Key": acct.Password},
		`{"subdomain":"`+acct.SubDomain+`","txt":"`+testValue+`"}`)
	if code != http.StatusOK {
		t.Fatalf("update: %d %s", code, body)
	}
	if got := extTXT(extQuery(t, d.dns, name, dns.TypeTXT)); len(got) != 1 || got[0] != testValue {
		t.Fatalf("TXT %v", got)
	}
	// Registration is closed for everyone else.
	if code, body := extCall(t, "POST", "http://"+d.api+"/register", nil, ""); code != http.StatusForbidden {
		t.Fatalf("register while closed: %d %s", code, body)
	}
}

// TestAccountAddDaemonStopped: no daemon, no warning; the next start
// serves the account.
func TestAccountAddDaemonStopped(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeExtConfig(t, dir, "")
	out := runAccountAdd(t, "--config", cfgPath)
	if !strings.HasPrefix(out.cname, "_acme-challenge.<domain>. CNAME ") {
		t.Fatalf("CNAME placeholder line %q", out.cname)
	}
	d := startExtDaemon(t, cfgPath)
	if m := extQuery(t, d.dns, out.register.Fulldomain, dns.TypeTXT); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[m.Rcode])
	}
}

func TestAccountAddBadFlags(t *testing.T) {
	cfgPath := writeExtConfig(t, t.TempDir(), "")
	for _, args := range [][]string{
		{"account"},
		{"account", "remove"},
		{"account", "add", "--config", cfgPath, "--allow-from", "300.1.1.1/8"},
		{"account", "add", "--config", cfgPath, "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, nil, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}

// TestDeregisterThenNXDOMAIN and the DNS query metrics, through serve's
// real wiring.
func TestDeregisterThenNXDOMAINAndMetrics(t *testing.T) {
	d := startExtDaemon(t, writeExtConfig(t, t.TempDir(), ""))
	code, body := extCall(t, "POST", "http://"+d.api+"/register", nil, "")
	if code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	var c httpapi.Credentials
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{"X-Api-User": c.Username, "X-Api-Key": c.Password}
	if code, body := extCall(t, "POST", "http://"+d.api+"/update", hdr, `{"subdomain":"`+c.Subdomain+`","txt":"`+testValue+`"}`); code != 200 {
		t.Fatalf("update: %d %s", code, body)
	}
	if got := extTXT(extQuery(t, d.dns, c.Fulldomain, dns.TypeTXT)); len(got) != 1 {
		t.Fatalf("TXT before deregister: %v", got)
	}
	if code, body := extCall(t, "POST", "http://"+d.api+"/deregister", hdr, `{"subdomain":"`+c.Subdomain+`"}`); code != 200 {
		t.Fatalf("deregister: %d %s", code, body)
	}
	if m := extQuery(t, d.dns, c.Fulldomain, dns.TypeTXT); m.Rcode != dns.RcodeNameError {
		t.Fatalf("after deregister: rcode %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
	code, metrics := extCall(t, "GET", "http://"+d.api+"/metrics", nil, "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`delegated_dns_queries_total{qtype="TXT",rcode="NOERROR"} 1`,
		`delegated_dns_queries_total{qtype="TXT",rcode="NXDOMAIN"} 1`,
		`delegated_api_requests_total{route="deregister",status="200"} 1`,
		`delegated_accounts 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// acmeDNSSchema is acme-dns's SQLite schema (joohoi/acme-dns db.go).
const acmeDNSSchema = `
CREATE TABLE IF NOT EXISTS acmedns(
	Name TEXT,
	Value TEXT
);
CREATE TABLE IF NOT EXISTS records(
	Username TEXT UNIQUE NOT NULL PRIMARY KEY,
	Password TEXT UNIQUE NOT NULL,
	Subdomain TEXT UNIQUE NOT NULL,
	AllowFrom TEXT
);
CREATE TABLE IF NOT EXISTS txt(
	Subdomain TEXT NOT NULL,
	Value   TEXT NOT NULL DEFAULT '',
	LastUpdate INT
);
INSERT INTO acmedns (Name, Value) values('db_version', '1');`

type acmeDNSRow struct {
	user, key, sub, allow string
}

// buildACMEDNSDB writes a database as acme-dns leaves it: bcrypt (cost 10)
// hashes stored as []byte, two txt rows per account (one never updated).
func buildACMEDNSDB(t *testing.T, path string, rows []acmeDNSRow, liveValue map[string]string, now time.Time) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(acmeDNSSchema); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		hash, err := bcrypt.GenerateFromPassword([]byte(r.key), 10)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO records(Username, Password, Subdomain, AllowFrom) values(?, ?, ?, ?)`, r.user, hash, r.sub, r.allow); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := db.Exec(`INSERT INTO txt (Subdomain, LastUpdate) values(?, 0)`, r.sub); err != nil {
				t.Fatal(err)
			}
		}
		if v, ok := liveValue[r.sub]; ok {
			if _, err := db.Exec(`UPDATE txt SET Value=?, LastUpdate=? WHERE rowid=(SELECT rowid FROM txt WHERE Subdomain=? ORDER BY LastUpdate LIMIT 1)`, v, now.Add(-time.Minute).Unix(), r.sub); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestImportACMEDNS(t *testing.T) {
	dir := t.TempDir()
	open := acmeDNSRow{"8e5700ea-a4bf-4ffe-8b7e-33d1a2a0bd5b", "oWXz1hD-Ah1aj_vHRjJm6tLC0wsm6l7ZFA2mIKsA", "c36f50e8-4632-44f0-83fe-e070fef28a10", `[]`}
	limited := acmeDNSRow{"b2d4b0f5-2d07-4b24-9d8e-bc4d3d6b2e3a", "M0nJYy4gX2YQ-0ZrXK1pQ4Tgfb9-NVyBmZbIlK3e", "f1b1a9a4-52c6-4d9f-b33e-8f0f3c1c0e5d", `["192.0.2.0/24"]`}
	old := "pv1mA7zqtGJrFvX2vxK4yfNsgQkEHbNo3s0iC9cZ8dI"
	acmePath := filepath.Join(dir, "acme-dns.db")
	buildACMEDNSDB(t, acmePath, []acmeDNSRow{open, limited}, map[string]string{open.sub: old}, time.Now())

	cfgPath := writeExtConfig(t, dir, "")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"import-acme-dns", "--db", acmePath, "--config", cfgPath}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("import: exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "imported 2 accounts (0 already present), 1 live values; skipped 0" {
		t.Fatalf("import said %q", got)
	}
	// Running it again changes nothing.
	stdout.Reset()
	if code := run(context.Background(), []string{"import-acme-dns", "--db", acmePath, "--config", cfgPath, "--values=false"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("second import: exit %d: %s", code, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "imported 0 accounts (2 already present), 0 live values; skipped 0" {
		t.Fatalf("second import said %q", got)
	}

	d := startExtDaemon(t, cfgPath)
	name := open.sub + ".auth.example.test."
	if got := extTXT(extQuery(t, d.dns, name, dns.TypeTXT)); len(got) != 1 || got[0] != old {
		t.Fatalf("imported live value: TXT %v", got)
	}
	// The customer's stored credential works unchanged, and DNS serves
	// the new value beside the old.
	hdr := map[string]string{"X-Api-User": open.user, "X-Api-Key": open.key}
	if code, body := extCall(t, "POST", "http://"+d.api+"/update", hdr, `{"subdomain":"`+open.sub+`","txt":"`+testValue+`"}`); code != 200 || body != `{"txt": "`+testValue+`"}` {
		t.Fatalf("update with the acme-dns credential: %d %s", code, body)
	}
	if got := extTXT(extQuery(t, d.dns, name, dns.TypeTXT)); len(got) != 2 {
		t.Fatalf("TXT after update: %v", got)
	}
	// allowfrom came along: 127.0.0.1 is outside 192.0.2.0/24.
	hdr = map[string]string{"X-Api-User": limited.user, "X-Api-Key": limited.key}
	if code, body := extCall(t, "POST", "http://"+d.api+"/update", hdr, `{"subdomain":"`+limited.sub+`","txt":"`+testValue+`"}`); code != 401 {
		t.Fatalf("update outside the imported allowfrom: %d %s", code, body)
	}
	if m := extQuery(t, d.dns, limited.sub+".auth.example.test.", dns.TypeTXT); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Fatalf("limited account's name: rcode %s answers %d", dns.RcodeToString[m.Rcode], len(m.Answer))
	}
}

// TestImportWhileServing: an import into the store of a running daemon is
// served without a restart: the daemon follows writes other processes make
// to its SQLite file.
func TestImportWhileServing(t *testing.T) {
	dir := t.TempDir()
	row := acmeDNSRow{"5f0b8a3e-9a51-4b0e-8a52-2b8d3f0e6c11", "Yk2m8Qf0-tR7wZx1LpNc4Vb6Hs9Jd3Ga5Ke2Uo7I", "0a4c3e1f-7d2b-4f6a-9c8e-5b1d2a3f4e6c", `[]`}
	value := "a9X0bQ2cR4dS6eT8fU0gV2hW4iX6jY8kZ0lA2mB4nC6"
	acmePath := filepath.Join(dir, "acme-dns.db")
	buildACMEDNSDB(t, acmePath, []acmeDNSRow{row}, map[string]string{row.sub: value}, time.Now())
	cfgPath := writeExtConfig(t, dir, "")

	d := startExtDaemon(t, cfgPath)
	name := row.sub + ".auth.example.test."
	if m := extQuery(t, d.dns, name, dns.TypeTXT); m.Rcode != dns.RcodeNameError {
		t.Fatalf("before the import: rcode %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"import-acme-dns", "--db", acmePath, "--config", cfgPath}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("import: exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	imported := time.Now()
	for {
		got := extTXT(extQuery(t, d.dns, name, dns.TypeTXT))
		if len(got) == 1 && got[0] == value {
			t.Logf("served %v after the import", time.Since(imported).Round(time.Millisecond))
			break
		}
		if time.Since(imported) > 5*time.Second {
			t.Fatalf("imported value not served 5 s after the import (TXT %v)", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestImportACMEDNSSkipsBadRows(t *testing.T) {
	dir := t.TempDir()
	acmePath := filepath.Join(dir, "acme-dns.db")
	buildACMEDNSDB(t, acmePath, []acmeDNSRow{
		{"not-a-uuid", "oWXz1hD-Ah1aj_vHRjJm6tLC0wsm6l7ZFA2mIKsA", "c36f50e8-4632-44f0-83fe-e070fef28a10", `[]`},
		{"b2d4b0f5-2d07-4b24-9d8e-bc4d3d6b2e3a", "M0nJYy4gX2YQ-0ZrXK1pQ4Tgfb9-NVyBmZbIlK3e", "f1b1a9a4-52c6-4d9f-b33e-8f0f3c1c0e5d", `["bogus"]`},
		{"8e5700ea-a4bf-4ffe-8b7e-33d1a2a0bd5b", "abcdefghijABCDEFGHIJ0123456789-_abcdefgh", "0d0b9a0e-8c4c-4bd0-a8d1-4f3f0f9a7c55", `["10.0.0.0/8"]`},
	}, nil, time.Now())
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"import-acme-dns", "--db", acmePath, "--config", writeExtConfig(t, dir, "")}, nil, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if got := strings.TrimSpace(stdout.String()); got != "imported 1 accounts (0 already present), 0 live values; skipped 2" {
		t.Fatalf("import said %q", got)
	}
	for _, want := range []string{"not-a-uuid: username is not a UUID", `AllowFrom "[\"bogus\"]" holds an invalid CIDR`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, stderr.String())
		}
	}
}
