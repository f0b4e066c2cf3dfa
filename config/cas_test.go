package config

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssuerCAs(t *testing.T) {
	const base = "[zone]\ndomain = \"auth.example.org\"\n[issuer]\n"
	path := filepath.Join(t.TempDir(), "config.toml")
	dir := filepath.Dir(path)

	t.Run("single-CA keys are a one-element list", func(t *testing.T) {
		c, err := Parse([]byte(base+"directory = \"https://ca.example/dir\"\nemail = \"a@b.c\"\nca_roots = [\"roots.pem\"]\nkey_type = \"ec384\"\neab_kid = \"kid\"\neab_hmac_file = \"hmac\"\npreferred_chain = \"Root X\"\n"), path)
		if err != nil {
			t.Fatal(err)
		}
		want := CA{Name: DefaultCAName, Directory: "https://ca.example/dir", Email: "a@b.c", CARoots: []string{filepath.Join(dir, "roots.pem")},
			EABKID: "kid", EABHMACFile: filepath.Join(dir, "hmac"), PreferredChain: "Root X", KeyType: "EC384"}
		if len(c.Issuer.CAs) != 1 || !equalCA(c.Issuer.CAs[0], want) {
			t.Fatalf("CAs = %+v, want [%+v]", c.Issuer.CAs, want)
		}
		if c.Issuer.CABackoff.Duration != 5*time.Minute {
			t.Errorf("ca_backoff default %s, want 5m", c.Issuer.CABackoff.Duration)
		}
		if got := c.Issuer.CAs[0].EABHMACEnv(); got != "DELEGATED_EAB_HMAC" {
			t.Errorf("EAB env of the single form %s", got)
		}
	})

	t.Run("list in order of preference", func(t *testing.T) {
		c, err := Parse([]byte(base+`ca_backoff = "30s"
[[issuer.ca]]
name = "letsencrypt"
directory = "https://acme-v02.api.letsencrypt.org/directory"
email = "ops@example.org"
profile = "tlsserver"
caa_identities = ["LetsEncrypt.org."]
[[issuer.ca]]
name = "zero-ssl"
directory = "https://acme.zerossl.com/v2/DV90"
eab_kid = "kid"
eab_hmac_file = "zerossl.hmac"
key_type = "RSA2048"
`), path)
		if err != nil {
			t.Fatal(err)
		}
		cas := c.Issuer.CAs
		if len(cas) != 2 || cas[0].Name != "letsencrypt" || cas[1].Name != "zero-ssl" {
			t.Fatalf("CAs = %+v", cas)
		}
		if cas[0].KeyType != "EC256" || cas[0].Profile != "tlsserver" || !slices.Equal(cas[0].CAAIdentities, []string{"letsencrypt.org"}) {
			t.Errorf("first CA %+v", cas[0])
		}
		if cas[1].KeyType != "RSA2048" || cas[1].EABHMACFile != filepath.Join(dir, "zerossl.hmac") {
			t.Errorf("second CA %+v", cas[1])
		}
		if got := cas[1].EABHMACEnv(); got != "DELEGATED_EAB_HMAC_ZERO_SSL" {
			t.Errorf("EAB env %s", got)
		}
		if c.Issuer.CABackoff.Duration != 30*time.Second {
			t.Errorf("ca_backoff %s", c.Issuer.CABackoff.Duration)
		}
	})

	const one = "[[issuer.ca]]\nname = \"a\"\ndirectory = \"https://a.example/dir\"\n"
	tests := []struct {
		name, section, key, msg string
	}{
		{"mixing directory", "directory = \"https://ca/dir\"\n" + one, "issuer.directory", "cannot be combined with [[issuer.ca]]"},
		{"mixing key_type", "key_type = \"EC384\"\n" + one, "issuer.key_type", "cannot be combined"},
		{"mixing email", "email = \"a@b.c\"\n" + one, "issuer.email", "cannot be combined"},
		{"mixing ca_roots", "ca_roots = [\"r.pem\"]\n" + one, "issuer.ca_roots", "cannot be combined"},
		{"mixing eab", "eab_kid = \"k\"\n" + one, "issuer.eab_kid", "cannot be combined"},
		{"mixing preferred_chain", "preferred_chain = \"X\"\n" + one, "issuer.preferred_chain", "cannot be combined"},
		{"no name", "[[issuer.ca]]\ndirectory = \"https://a/dir\"\n", "issuer.ca[0].name", "missing"},
		{"bad name", "[[issuer.ca]]\nname = \"Let's Encrypt\"\ndirectory = \"https://a/dir\"\n", "issuer.ca[0].name", "lower-case"},
		{"duplicate name", one + one, "issuer.ca[1].name", "also the name of issuer.ca[0]"},
		{"no directory", one + "[[issuer.ca]]\nname = \"b\"\n", "issuer.ca[1].directory", "missing"},
		{"http directory", "[[issuer.ca]]\nname = \"a\"\ndirectory = \"http://a/dir\"\n", "issuer.ca[0].directory", "not an https URL"},
		{"bad key type", one + "key_type = \"ED25519\"\n", "issuer.ca[0].key_type", "EC256"},
		{"hmac without kid", one + "eab_hmac_file = \"h\"\n", "issuer.ca[0].eab_kid", "issuer.ca[0].eab_hmac_file needs"},
		{"bad caa identity", one + "caa_identities = [\"letsencrypt.org; accounturi=x\"]\n", "issuer.ca[0].caa_identities[0]", "not an issuer domain name"},
		{"bad email", one + "email = \"nobody\"\n", "issuer.ca[0].email", "not an email address"},
		{"unknown key", one + "directroy = \"x\"\n", "issuer.ca.directroy", "unknown key"},
		{"tiny backoff", "ca_backoff = \"10ms\"\n" + one, "issuer.ca_backoff", "too short"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(base+tc.section), path)
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %v, want an error on %s containing %q", err, tc.key, tc.msg)
			}
		})
	}
}

func equalCA(a, b CA) bool {
	return a.Name == b.Name && a.Directory == b.Directory && a.Email == b.Email && slices.Equal(a.CARoots, b.CARoots) &&
		a.EABKID == b.EABKID && a.EABHMACFile == b.EABHMACFile && a.PreferredChain == b.PreferredChain &&
		a.Profile == b.Profile && a.KeyType == b.KeyType && slices.Equal(a.CAAIdentities, b.CAAIdentities)
}
