package e2eissuer_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// TestRestartMidOrder: the daemon is stopped while Pebble is still
// validating an order; after the restart the same order resumes, and
// Pebble issues exactly one certificate for it.
func TestRestartMidOrder(t *testing.T) {
	// Pebble's VA sleeps up to 6 s per validation, so the order is in
	// flight when the daemon stops.
	s := e2e.Start(t, e2e.Options{PebbleEnv: []string{"PEBBLE_VA_NOSLEEP=0", "PEBBLE_VA_SLEEPTIME=6"}})
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "setup", "-d", "example.test", "-d", "*.example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	waitActive(t, s, "setup", 30*time.Second)

	// A VA sleep may be 0 s, finishing the order before the stop: then try
	// again with another name (each try has ≥ 1 - 1/36 chance to interrupt).
	for try := 1; try <= 5; try++ {
		name := fmt.Sprintf("restart-%d", try)
		orders, issued := s.PebbleOrders(), s.PebbleIssued()
		if out, code := s.CLI("issue", "--no-wait", "--cert-name", name, "-d", "example.test", "-d", "*.example.test"); code != 0 {
			t.Fatalf("issue: exit %d: %s", code, out)
		}
		harness.Eventually(t, 10*time.Second, 10*time.Millisecond, "order placed", func() error {
			if s.PebbleOrders() == orders {
				return fmt.Errorf("no order yet")
			}
			return nil
		})
		s.Restart()
		prev, err := os.ReadFile(s.PrevLogs[len(s.PrevLogs)-1])
		if err != nil {
			t.Fatal(err)
		}
		interrupted := strings.Contains(string(prev), `msg="order interrupted by shutdown; will restart" component=issuer cert=`+name)
		c := waitActive(t, s, name, 60*time.Second)
		if got := s.PebbleIssued() - issued; got != 1 {
			t.Errorf("Pebble issued %d certificates for %s, want exactly 1", got, name)
		}
		if !interrupted {
			t.Logf("try %d: the order finished before the stop; trying again", try)
			continue
		}
		if got := s.PebbleOrders() - orders; got != 1 {
			t.Errorf("Pebble received %d orders for %s across the restart, want 1 (resumed)", got, name)
		}
		log, err := os.ReadFile(s.Daemon.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), `msg="interrupted order resumed"`) {
			t.Errorf("the restarted daemon did not resume the order")
		}
		if fileSerial(t, c.Paths.Cert) != c.Serial {
			t.Errorf("deployed serial differs from the stored one")
		}
		t.Logf("try %d: interrupted mid-order, resumed after the restart: 1 order, 1 certificate (serial %s)", try, c.Serial)
		return
	}
	t.Fatal("no try interrupted an order in flight")
}

func waitActive(t *testing.T, s *e2e.Stack, name string, timeout time.Duration) e2e.Cert {
	t.Helper()
	var c e2e.Cert
	harness.Eventually(t, timeout, 100*time.Millisecond, name+" active", func() error {
		var err error
		if c, err = s.Certificate(name); err != nil {
			return err
		}
		if c.Status != "active" {
			return fmt.Errorf("status %s (%s)", c.Status, c.LastError)
		}
		return nil
	})
	return c
}
