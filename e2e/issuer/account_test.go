package e2eissuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"strings"
	"testing"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// TestExternalAccountBinding: against a CA that requires EAB, the account
// registers with the configured kid and HMAC (read from a file), and the
// configured key type is used; a wrong HMAC fails with the CA's reason.
func TestExternalAccountBinding(t *testing.T) {
	const kid, hmac = "kid-e2e", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	for _, tc := range []struct {
		name, hmac string
		wantErr    string
	}{
		{"right key", hmac, ""},
		{"wrong key", strings.Repeat("A", len(hmac)), "external account binding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e2e.Start(t, e2e.Options{
				PebbleModify: func(c *harness.PebbleConfig) {
					c.Pebble.ExternalAccountBindingRequired = true
					c.Pebble.ExternalAccountMACKeys = map[string]string{kid: hmac}
				},
				IssuerExtra: "eab_kid = \"" + kid + "\"\neab_hmac_file = \"eab.hmac\"\nkey_type = \"EC384\"\nretry_attempts = 1",
				Files:       map[string]string{"eab.hmac": tc.hmac + "\n"},
			})
			out, code := s.CLI("issue", "--no-wait", "--cert-name", "eab", "-d", "example.test")
			if code != 0 {
				t.Fatalf("issue: exit %d: %s", code, out)
			}
			s.SetCNAMEs(records(t, out))
			out, code = s.CLI("retry", "--cert-name", "eab")
			t.Logf("delegated retry --cert-name eab\n%s", out)
			if tc.wantErr != "" {
				if code == 0 || !strings.Contains(out, tc.wantErr) {
					t.Fatalf("exit %d, want failure naming %q", code, tc.wantErr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("retry: exit %d", code)
			}
			c := mustCert(t, s, "eab")
			leaf := readCerts(t, c.Paths.Cert)[0]
			pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P384() {
				t.Errorf("key %T, want ECDSA P-384 (key_type EC384)", leaf.PublicKey)
			}
		})
	}
}
