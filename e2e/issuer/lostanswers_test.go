package e2eissuer_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	e2e "github.com/delegated/delegated/e2e/issuer"
)

// answerLoser lets Pebble act on the first POST to each of its paths, then
// drops the connection instead of answering: the request's effect is real,
// the daemon just never learns of it, as when a response times out.
type answerLoser struct {
	mu    sync.Mutex
	paths []string // Pebble path prefixes still to lose an answer on
	lost  []string
}

func (l *answerLoser) front(pebble http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !l.take(r.URL.Path) {
			pebble.ServeHTTP(w, r)
			return
		}
		pebble.ServeHTTP(httptest.NewRecorder(), r)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, "cannot drop the connection: "+err.Error(), http.StatusTeapot)
			return
		}
		conn.Close()
	})
}

// take reports whether the answer to a request for path is to be lost.
func (l *answerLoser) take(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, p := range l.paths {
		if strings.HasPrefix(path, p) {
			l.paths = append(l.paths[:k], l.paths[k+1:]...)
			l.lost = append(l.lost, path)
			return true
		}
	}
	return false
}

func (l *answerLoser) remaining() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.paths...)
}

// TestLostCAAnswers: the CA carries out a request but its answer is lost,
// once each for triggering a challenge, reading the order, finalizing and
// downloading the certificate. The attempt goes on within seconds, asking
// the CA what it did before repeating a request that changes state, instead
// of failing and waiting RetryInterval (15 minutes by default); the CA
// receives one order and issues one certificate.
func TestLostCAAnswers(t *testing.T) {
	loser := &answerLoser{paths: []string{"/chalZ/", "/my-order/", "/finalize-order/", "/certZ/"}}
	s := e2e.Start(t, e2e.Options{CAFront: loser.front})
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "lossy", "-d", "example.test", "-d", "*.example.test")
	if code != 0 {
		t.Fatalf("issue --no-wait: exit %d\n%s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	started := time.Now()
	c := waitActive(t, s, "lossy", 60*time.Second)
	t.Logf("active after %.1fs with answers lost for %v", time.Since(started).Seconds(), loser.lost)
	if left := loser.remaining(); len(left) != 0 {
		t.Errorf("the daemon never sent %v; the test lost fewer answers than it means to", left)
	}
	checkDeployed(t, s, c, []string{"example.test", "*.example.test"})
	if orders, issued := s.PebbleOrders(), s.PebbleIssued(); orders != 1 || issued != 1 {
		t.Errorf("Pebble saw %d orders and issued %d certificates, want 1 and 1", orders, issued)
	}
	log, err := os.ReadFile(s.Daemon.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "attempt failed") {
		t.Errorf("a lost answer failed the attempt:\n%s", log)
	}
	for _, step := range []string{"trigger challenge", "finalize", "download certificate"} {
		value := step
		if strings.Contains(step, " ") {
			value = strconv.Quote(step)
		}
		if !strings.Contains(string(log), `msg="CA did not answer; trying again" component=issuer step=`+value+" ") {
			t.Errorf("the daemon log does not show %q tried again:\n%s", step, log)
		}
	}
	if !strings.Contains(string(log), "lost finalize answer had been acted on") {
		t.Errorf("finalize was not recognised as done by the CA:\n%s", log)
	}
}
