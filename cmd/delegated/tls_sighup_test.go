package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/delegated/delegated/config"

	"github.com/delegated/delegated/e2e/harness"
)

func writeTestCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "delegated sighup test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTLSReloadOnSIGHUP runs the real process with api.tls = "files",
// replaces the files and sends SIGHUP: the new certificate is served
// without a restart. The file check interval (30 s) is longer than the
// test's deadline, so only the signal explains the reload.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	writeTestCert(t, certFile, keyFile, 1)
	cfgPath := writeExtConfig(t, dir, "tls = \"files\"\ncert_file = \"api.crt\"\nkey_file = \"api.key\"\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := cfg.API.Listen[0]

	cmd := exec.Command(os.Args[0], "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "DELEGATED_RUN_MAIN=1")
	stderr := &harness.LockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", stderr.String())
		}
	}()

	serial := func() (int64, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // we inspect the certificate ourselves
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	waitFor := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, err := serial()
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("serial %d (%v), want %d", got, err, want)
			}
			time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
		}
	}
	waitFor(1)
	writeTestCert(t, certFile, keyFile, 2)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(2)
	// The new certificate is served before the line saying so is logged,
	// and the child's stderr reaches the buffer through a pipe: wait.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "TLS certificate reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged within 5s of serving the new certificate")
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}
