package e2eissuer_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// TestRenewsByItself: with Pebble issuing 40-second certificates, the
// daemon renews inside Pebble's ARI window without any operator action;
// files and hook show the new serial, and the old files stay until then.
func TestRenewsByItself(t *testing.T) {
	s := e2e.Start(t, e2e.Options{Validity: 40 * time.Second})
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "short", "-d", "example.test", "-d", "*.example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	var first e2e.Cert
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "first certificate", func() error {
		var err error
		if first, err = s.Certificate("short"); err != nil {
			return err
		}
		if first.Status != "active" || first.Serial == "" {
			return fmt.Errorf("status %s", first.Status)
		}
		return nil
	})
	if got := fileSerial(t, first.Paths.Cert); got != first.Serial {
		t.Fatalf("deployed serial %s, stored %s", got, first.Serial)
	}
	var renewed e2e.Cert
	harness.Eventually(t, 60*time.Second, 200*time.Millisecond, "renewal", func() error {
		var err error
		if renewed, err = s.Certificate("short"); err != nil {
			return err
		}
		if renewed.Serial == first.Serial || renewed.Status != "active" {
			return fmt.Errorf("serial %s status %s", renewed.Serial, renewed.Status)
		}
		// The files follow the store once the attempt has deployed.
		if fileSerial(t, renewed.Paths.Cert) != renewed.Serial {
			return fmt.Errorf("files not yet replaced")
		}
		return nil
	})
	log, err := os.ReadFile(s.Daemon.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	plan := regexp.MustCompile(`msg="renewal scheduled".*cert=short source=ari renew_at=\S+ not_after=\S+ ari_window_start=\S+ ari_window_end=\S+`).FindString(string(log))
	if plan == "" {
		t.Errorf("no ARI renewal plan in the daemon log")
	}
	t.Logf("first serial %s, renewed serial %s; %s", first.Serial, renewed.Serial, plan)
	hook, err := os.ReadFile(s.HookLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(hook), "DELEGATED_RENEWED=1\n") {
		t.Errorf("the hook never ran with DELEGATED_RENEWED=1:\n%s", hook)
	}
}

// fileSerial reads the serial of a deployed cert.pem.
func fileSerial(t *testing.T, path string) string {
	t.Helper()
	certs := readCerts(t, path)
	return fmt.Sprintf("%x", certs[0].SerialNumber)
}
