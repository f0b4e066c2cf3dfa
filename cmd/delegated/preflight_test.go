package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadConfigStartsNothing: every bad setting, in the file or in what it
// points at, ends `delegated serve` with exit status 2 and a message naming
// the key, before the database exists.
func TestBadConfigStartsNothing(t *testing.T) {
	const base = `
[zone]
domain = "auth.example.test"
records = [%s]

[dns]
listen = ["127.0.0.1:%s"]

[api]
listen = ["127.0.0.1:%s"]
%s

[store]
dsn = "state.db"
%s
`
	const issuerSection = "\n[issuer]\ndirectory = \"https://ca.example.test/dir\"\nresolvers = [\"127.0.0.1:53\"]\n"
	cases := []struct {
		name, records, api, issuer, key string
	}{
		{"wildcard record", `"ns1.auth.example.test. A 127.0.0.1", "*.auth.example.test. A 127.0.0.1"`, "", "", "zone.records[1]"},
		{"missing certificate", "", "tls = \"files\"\ncert_file = \"missing.pem\"\nkey_file = \"missing.key\"", "", "api.cert_file"},
		{"certificate not PEM", "", "tls = \"files\"\ncert_file = \"junk.pem\"\nkey_file = \"junk.pem\"", "", "api.cert_file"},
		{"token mode without token", "", `registration = "token"`, "", "api.registration_token_file"},
		{"empty token file", "", "registration = \"token\"\nregistration_token_file = \"empty.token\"", "", "api.registration_token_file"},
		{"missing CA roots", "", "", issuerSection + `ca_roots = ["missing.pem"]`, "issuer.ca_roots[0]"},
		{"EAB key id without key", "", "", issuerSection + `eab_kid = "kid"`, "issuer.eab_kid"},
		{"database below a file", "", "", "", "store.dsn"},
		{"deploy_dir below a file", "", "", issuerSection + `deploy_dir = "junk.pem/certs"`, "issuer.deploy_dir"},
		{"IP resolver without port", "", "", "\n[issuer]\ndirectory = \"https://ca.example.test/dir\"\nresolvers = [\"127.0.0.1\"]", "issuer.resolvers[0]"},
	}
	t.Setenv(registrationTokenEnv, "")
	t.Setenv(envEABHMAC, "")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not PEM\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "empty.token"), []byte("\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "config.toml")
			parts := strings.Split(base, "%s")
			if c.name == "database below a file" {
				parts[4] = strings.Replace(parts[4], `dsn = "state.db"`, `dsn = "junk.pem/state.db"`, 1)
			}
			body := parts[0] + c.records + parts[1] + strconv.Itoa(freePort(t)) + parts[2] + strconv.Itoa(freePort(t)) +
				parts[3] + c.api + parts[4] + c.issuer + parts[5]
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			// Were the check missing, serve would run: the deadline ends it.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := run(ctx, []string{"serve", "--config", path}, strings.NewReader(""), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.key+":") {
				t.Fatalf("message does not name %s: %s", c.key, stderr.String())
			}
			if strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Fatalf("expected one line, got: %s", stderr.String())
			}
			for _, f := range []string{"state.db", "state.db-wal", "state.db-shm", "delegated.sock"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Fatalf("%s was created by a start that failed its config", f)
				}
			}
		})
	}
}
