package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-acme/lego/v4/certcrypto"
)

// TestKeyTypes: the one list maps every documented word, in any case, to
// lego's type, and config keeps the canonical word.
func TestKeyTypes(t *testing.T) {
	want := map[string]certcrypto.KeyType{
		"": certcrypto.EC256, "EC256": certcrypto.EC256, "ec384": certcrypto.EC384,
		"RSA2048": certcrypto.RSA2048, "Rsa3072": certcrypto.RSA3072, "RSA4096": certcrypto.RSA4096,
	}
	for word, kt := range want {
		got, err := CertKeyType(word)
		if err != nil || got != kt {
			t.Errorf("CertKeyType(%q) = %q, %v; want %q", word, got, err, kt)
		}
	}
	if _, err := CertKeyType("ED25519"); err == nil || !strings.Contains(err.Error(), `"EC256", "EC384", "RSA2048", "RSA3072", "RSA4096"`) {
		t.Errorf("ED25519: %v", err)
	}
	const base = "[zone]\ndomain = \"auth.example.org\"\n[issuer]\ndirectory = \"https://ca.example/dir\"\nkey_type = \"rsa3072\"\n"
	c, err := Parse([]byte(base), filepath.Join(t.TempDir(), "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer.KeyType != "RSA3072" {
		t.Errorf("key_type kept as %q, want RSA3072", c.Issuer.KeyType)
	}
}
