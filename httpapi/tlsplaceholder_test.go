package httpapi_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/httpapi"
)

// TestTLSPlaceholderUntilIssued: with TLSPlaceholder ([api] tls = "acme"),
// missing files do not stop the API: a self-signed placeholder naming the
// configured names is served, and the real pair replaces it once it exists.
func TestTLSPlaceholderUntilIssued(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "live", "fullchain.pem"), filepath.Join(dir, "live", "privkey.pem")
	reload := make(chan struct{})
	// With a placeholder, missing files must not fail httpapi.New.
	addr := startTLSAPI(t, dir, httpapi.Options{
		TLSCertFile: certFile, TLSKeyFile: keyFile, TLSReload: reload,
		TLSPlaceholder:   []string{"auth.example.org"},
		TLSCheckInterval: time.Hour,
	})

	leaf := servedLeaf(t, addr)
	if !strings.Contains(leaf.Subject.CommonName, "placeholder") || !slices.Equal(leaf.DNSNames, []string{"auth.example.org"}) {
		t.Fatalf("served %q %q, want the placeholder for auth.example.org", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if leaf.Issuer.CommonName != leaf.Subject.CommonName {
		t.Fatalf("placeholder issued by %q, want itself", leaf.Issuer.CommonName)
	}

	// A reload while the files are still missing keeps the placeholder.
	reload <- struct{}{}
	reload <- struct{}{} // the second send returns only after the first reload ran
	if again := servedLeaf(t, addr); !again.Equal(leaf) {
		t.Fatalf("placeholder replaced while the files are missing: %q", again.Subject.CommonName)
	}

	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSelfSigned(t, certFile, keyFile, 7, time.Now().Truncate(time.Second))
	reload <- struct{}{}
	waitSerial(t, addr, 7)
}

func servedLeaf(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // we inspect the certificate ourselves
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}
