package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssuerSection(t *testing.T) {
	const base = "[zone]\ndomain = \"auth.example.org\"\n[store]\ndsn = \"data/d.db\"\n"
	path := filepath.Join(t.TempDir(), "config.toml")
	dir := filepath.Dir(path)

	t.Run("absent: issuer off", func(t *testing.T) {
		c, err := Parse([]byte(base), path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Issuer != nil {
			t.Errorf("issuer configured without an [issuer] section: %+v", c.Issuer)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		c, err := Parse([]byte(base+"[issuer]\ndirectory = \"https://ca.example/dir\"\n"), path)
		if err != nil {
			t.Fatal(err)
		}
		is := c.Issuer
		if is.KeyType != "EC256" || is.DelegationRecheck.Duration != 5*time.Minute || is.RetryInterval.Duration != 15*time.Minute ||
			is.RetryAttempts != 5 || !*is.CheckAuthoritative || is.AuthoritativePort != 53 || is.Challenge != "dns-01" || is.Profile != "" {
			t.Errorf("defaults: %+v", is)
		}
		if is.DeployDir != filepath.Join(dir, "certs") {
			t.Errorf("deploy_dir %s", is.DeployDir)
		}
		if is.OperatorSocket != filepath.Join(dir, "data", "delegated.sock") {
			t.Errorf("operator_socket %s, want next to the store", is.OperatorSocket)
		}
	})

	t.Run("challenge and profile", func(t *testing.T) {
		c, err := Parse([]byte(base+"[issuer]\ndirectory = \"https://ca.example/dir\"\nchallenge = \"DNS-Persist-01\"\nprofile = \"shortlived\"\n"), path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Issuer.Challenge != "dns-persist-01" || c.Issuer.Profile != "shortlived" {
			t.Errorf("challenge %q profile %q", c.Issuer.Challenge, c.Issuer.Profile)
		}
	})

	tests := []struct {
		name, section, key, msg string
	}{
		{"no directory", "email = \"a@b.c\"", "issuer.directory", "missing"},
		{"plain http directory", "directory = \"http://ca.example/dir\"", "issuer.directory", "not an https URL"},
		{"bad email", "directory = \"https://ca/dir\"\nemail = \"nobody\"", "issuer.email", "not an email address"},
		{"bad key type", "directory = \"https://ca/dir\"\nkey_type = \"ED25519\"", "issuer.key_type", "EC256"},
		{"bad resolver", "directory = \"https://ca/dir\"\nresolvers = [\"8.8.8.8\"]", "issuer.resolvers[0]", "IP:port"},
		{"host name resolver", "directory = \"https://ca/dir\"\nresolvers = [\"dns.example:53\"]", "issuer.resolvers[0]", "host names are not accepted"},
		{"hmac without kid", "directory = \"https://ca/dir\"\neab_hmac_file = \"h\"", "issuer.eab_kid", "missing"},
		{"tiny recheck", "directory = \"https://ca/dir\"\ndelegation_recheck = \"10ms\"", "issuer.delegation_recheck", "too short"},
		{"bad attempts", "directory = \"https://ca/dir\"\nretry_attempts = -1", "issuer.retry_attempts", "out of range"},
		{"negative renew_before", "directory = \"https://ca/dir\"\nrenew_before = \"-1h\"", "issuer.renew_before", "negative"},
		{"bad port", "directory = \"https://ca/dir\"\nauthoritative_port = 70000", "issuer.authoritative_port", "not a port"},
		{"bad challenge", "directory = \"https://ca/dir\"\nchallenge = \"http-01\"", "issuer.challenge", "dns-account-01"},
		{"bad profile", "directory = \"https://ca/dir\"\nprofile = \"short lived\"", "issuer.profile", "not a profile name"},
		{"unknown key", "directory = \"https://ca/dir\"\nemial = \"a@b.c\"", "issuer.emial", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(base+"[issuer]\n"+tc.section+"\n"), path)
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %v, want an error on %s containing %q", err, tc.key, tc.msg)
			}
		})
	}
}
