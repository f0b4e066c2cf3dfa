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

// TestCAUnreachableThenForceRetry: with the CA down, attempts are spaced
// as configured (1 s, then doubling), the status becomes failed after the
// last one and the hook hears of it; once the CA is up, `delegated retry`
// obtains the certificate at once.
func TestCAUnreachableThenForceRetry(t *testing.T) {
	s := e2e.Start(t, e2e.Options{DeferPebble: true, IssuerExtra: "retry_interval = \"1s\"\nretry_attempts = 3"})
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "down", "-d", "example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	var c e2e.Cert
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "status failed", func() error {
		var err error
		if c, err = s.Certificate("down"); err != nil {
			return err
		}
		if c.Status != "failed" {
			return fmt.Errorf("status %s (%s)", c.Status, c.LastError)
		}
		return nil
	})
	if !strings.Contains(c.LastError, "connection refused") {
		t.Errorf("last error %q does not say why", c.LastError)
	}
	out, _ = s.CLI("certificates")
	t.Logf("delegated certificates\n%s", out)

	// The attempts' times, from the daemon log: 1 s, then 2 s apart.
	log, err := os.ReadFile(s.Daemon.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`time=(\S+) level=INFO msg="order starting" component=issuer cert=down`)
	var starts []time.Time
	for _, m := range re.FindAllStringSubmatch(string(log), -1) {
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, ts)
	}
	if len(starts) != 3 {
		t.Fatalf("%d attempts, want 3:\n%s", len(starts), log)
	}
	for k, want := range []time.Duration{time.Second, 2 * time.Second} {
		if gap := starts[k+1].Sub(starts[k]); gap < want || gap > want+time.Second {
			t.Errorf("attempt %d came %v after the previous, want %v", k+2, gap, want)
		}
	}
	hook, err := os.ReadFile(s.HookLog)
	if err != nil || strings.Count(string(hook), "DELEGATED_FAILED=1\n") != 1 {
		t.Errorf("the hook did not hear of the failure exactly once: %v\n%s", err, hook)
	}

	// The CA is back: a forced retry issues now.
	s.StartPebble()
	out, code = s.CLI("retry", "--cert-name", "down")
	t.Logf("delegated retry --cert-name down\n%s", out)
	if code != 0 {
		t.Fatalf("retry: exit %d", code)
	}
	if got := mustCert(t, s, "down").Status; got != "active" {
		t.Errorf("status %s after retry, want active", got)
	}
}
