package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/config"
)

// TestIssuerCAs: each [[issuer.ca]] gets its own roots and EAB key (file
// or DELEGATED_EAB_HMAC_<NAME>); a missing one is a start-up error (exit
// 2) naming the CA's key.
func TestIssuerCAs(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "roots.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zerossl.hmac"), []byte("c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T, cas string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte("[zone]\ndomain = \"auth.example.org\"\n[issuer]\nresolvers = [\"127.0.0.1:53\"]\n"+cas), filepath.Join(dir, "config.toml"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const two = `[[issuer.ca]]
name = "letsencrypt"
directory = "https://le.example/dir"
ca_roots = ["roots.pem"]
[[issuer.ca]]
name = "zero-ssl"
directory = "https://zs.example/dir"
eab_kid = "kid"
`
	t.Run("HMAC from the CA's variable", func(t *testing.T) {
		t.Setenv("DELEGATED_EAB_HMAC_ZERO_SSL", "from-env")
		cas, err := issuerCAs(cfgOf(load(t, two)))
		if err != nil {
			t.Fatal(err)
		}
		if len(cas) != 2 || cas[0].CARoots == nil || cas[1].CARoots != nil || cas[1].EABHMAC != "from-env" || cas[1].EABKID != "kid" {
			t.Fatalf("CAs %+v", cas)
		}
	})
	t.Run("HMAC from the file", func(t *testing.T) {
		cas, err := issuerCAs(cfgOf(load(t, two+"eab_hmac_file = \"zerossl.hmac\"\n")))
		if err != nil || cas[1].EABHMAC != "c2VjcmV0" {
			t.Fatalf("CAs %+v, %v", cas, err)
		}
	})
	for _, tc := range []struct {
		name, cas, want string
	}{
		{"no HMAC", two, "issuer.ca[1].eab_kid: set but no HMAC key: set issuer.ca[1].eab_hmac_file or DELEGATED_EAB_HMAC_ZERO_SSL"},
		{"missing roots", strings.Replace(two, "roots.pem", "nosuch.pem", 1) + "eab_hmac_file = \"zerossl.hmac\"\n", "issuer.ca[0].ca_roots[0]: open"},
		{"roots not PEM", strings.Replace(two, "roots.pem", "zerossl.hmac", 1) + "eab_hmac_file = \"zerossl.hmac\"\n", "issuer.ca[0].ca_roots[0]: " + filepath.Join(dir, "zerossl.hmac") + " holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DELEGATED_EAB_HMAC_ZERO_SSL", "")
			_, err := issuerCAs(cfgOf(load(t, tc.cas)))
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want exit 2 with %q", err, tc.want)
			}
		})
	}
}

// cfgOf hands issuerCAs a loaded config and its issuer section.
func cfgOf(cfg *config.Config) (*config.Config, *config.Issuer) { return cfg, cfg.Issuer }
