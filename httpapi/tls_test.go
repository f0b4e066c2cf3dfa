package httpapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/store"
)

// writeSelfSigned writes a fresh self-signed certificate for 127.0.0.1 with
// the given serial, and returns its DER.
func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64, mtime time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "delegated test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then certificate, as an operator's renewal script might.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	// Distinct mtimes make the change visible whatever the file system's
	// timestamp granularity.
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return der
}

// servedSerial connects afresh and returns the serial the server presents.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // we inspect the certificate ourselves
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func waitSerial(t *testing.T, addr string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := servedSerial(t, addr)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("served serial %d, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestTLSFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	der := writeSelfSigned(t, certFile, keyFile, 1, base)

	reload := make(chan struct{})
	addr := startTLSAPI(t, dir, httpapi.Options{
		TLSCertFile: certFile, TLSKeyFile: keyFile, TLSReload: reload,
		// Long enough that only the signal can explain the first reload.
		TLSCheckInterval: time.Hour,
	})

	// A verifying client trusting the self-signed certificate gets /health.
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("verified TLS handshake: %v", err)
	}
	conn.Close()

	// SIGHUP path: new files, then the signal.
	writeSelfSigned(t, certFile, keyFile, 2, base.Add(time.Minute))
	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("certificate changed before the signal: serial %d", got)
	}
	reload <- struct{}{}
	waitSerial(t, addr, 2)

	// A broken pair keeps the current certificate in service.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // the second send returns only after the first reload ran
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("broken files replaced the certificate: serial %d", got)
	}
}

func TestTLSReloadOnFileChange(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeSelfSigned(t, certFile, keyFile, 10, base)
	addr := startTLSAPI(t, dir, httpapi.Options{
		TLSCertFile: certFile, TLSKeyFile: keyFile, TLSCheckInterval: 10 * time.Millisecond,
	})
	if got := servedSerial(t, addr); got != 10 {
		t.Fatalf("serial %d", got)
	}
	writeSelfSigned(t, certFile, keyFile, 11, base.Add(time.Minute))
	waitSerial(t, addr, 11)
}

func TestTLSMissingFilesRefused(t *testing.T) {
	dir := t.TempDir()
	_, err := httpapi.New(httpapi.Options{Zone: extZone, TLSCertFile: filepath.Join(dir, "none.pem"), TLSKeyFile: filepath.Join(dir, "none.key")}, nil)
	if err == nil {
		t.Fatal("missing certificate files accepted")
	}
}

// startTLSAPI runs the API for extZone on a loopback port with a store in
// dir and the TLS settings of opts, until the test ends; it returns the
// address.
func startTLSAPI(t *testing.T, dir string, opts httpapi.Options) string {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	st, err := store.Open(context.Background(), "sqlite3", filepath.Join(dir, "tls.db"), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.Zone, opts.Listen, opts.Logger = extZone, []string{"127.0.0.1:0"}, quiet
	api, err := httpapi.New(opts, st)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Shutdown(context.Background()) })
	return api.Addrs()[0]
}
