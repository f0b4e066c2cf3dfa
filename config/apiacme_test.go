package config

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAPITLSACME(t *testing.T) {
	const zone = "[zone]\ndomain = \"auth.example.org\"\n"
	const issuer = "[issuer]\ndirectory = \"https://ca.example/dir\"\n"
	path := filepath.Join(t.TempDir(), "config.toml")

	valid := []struct {
		name, api string
		want      []string
	}{
		{"default: the zone's name", "tls = \"acme\"", []string{"auth.example.org"}},
		{"zone and wildcard, normalised and de-duplicated", "tls = \"acme\"\nacme_domains = [\"Auth.Example.org.\", \"*.auth.example.org\", \"auth.example.org\"]",
			[]string{"auth.example.org", "*.auth.example.org"}},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(zone+"[api]\n"+tc.api+"\n"+issuer), path)
			if err != nil {
				t.Fatal(err)
			}
			if c.API.TLS != "acme" || !slices.Equal(c.API.ACMEDomains, tc.want) {
				t.Errorf("tls %q acme_domains %q, want \"acme\" %q", c.API.TLS, c.API.ACMEDomains, tc.want)
			}
		})
	}

	invalid := []struct {
		name, api, issuer, key, msg string
	}{
		{"no issuer", "tls = \"acme\"", "", "api.tls", "[issuer]"},
		{"name outside the zone", "tls = \"acme\"\nacme_domains = [\"example.org\"]", issuer, "api.acme_domains[0]", "\"auth.example.org\""},
		{"name below the zone's name", "tls = \"acme\"\nacme_domains = [\"auth.example.org\", \"www.auth.example.org\"]", issuer, "api.acme_domains[1]", "wildcard"},
		{"wildcard of another zone", "tls = \"acme\"\nacme_domains = [\"*.example.org\"]", issuer, "api.acme_domains[0]", "not supported"},
		{"empty name", "tls = \"acme\"\nacme_domains = [\"\"]", issuer, "api.acme_domains[0]", "empty"},
		{"cert_file with acme", "tls = \"acme\"\ncert_file = \"c.pem\"", issuer, "api.cert_file", "obtains the certificate itself"},
		{"key_file with acme", "tls = \"acme\"\nkey_file = \"k.pem\"", issuer, "api.key_file", "obtains the certificate itself"},
		{"acme_domains without acme", "acme_domains = [\"auth.example.org\"]", issuer, "api.acme_domains", "api.tls"},
		{"acme_domains with files", "tls = \"files\"\ncert_file = \"c\"\nkey_file = \"k\"\nacme_domains = [\"auth.example.org\"]", issuer, "api.acme_domains", "\"files\""},
		{"unknown tls", "tls = \"auto\"", issuer, "api.tls", "\"acme\""},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(zone+"[api]\n"+tc.api+"\n"+tc.issuer), path)
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %v, want an error on %s containing %q", err, tc.key, tc.msg)
			}
		})
	}

	// A static record at the challenge name would shadow the values.
	t.Run("static record at the challenge name", func(t *testing.T) {
		records := "records = [\"www A 127.0.0.1\", \"_acme-challenge TXT stale\"]\n"
		_, err := Parse([]byte(zone+records+"[api]\ntls = \"acme\"\n"+issuer), path)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != "zone.records[1]" || !strings.Contains(ce.Msg, "_acme-challenge.auth.example.org") {
			t.Fatalf("got %v, want an error on zone.records[1] naming the challenge name", err)
		}
	})
}
