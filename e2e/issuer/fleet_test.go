package e2eissuer_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// certJSON is what these tests read of `certificates --json`.
type certJSON struct {
	Name          string    `json:"name"`
	Status        string    `json:"status"`
	LastError     string    `json:"last_error"`
	CheckFailures int       `json:"check_failures"`
	RenewalInfoAt time.Time `json:"renewal_info_at"`
}

func listCerts(t *testing.T, s *e2e.Stack, args ...string) []certJSON {
	t.Helper()
	out, code := s.CLI(append([]string{"certificates", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("certificates --json: exit %d: %s", code, out)
	}
	var certs []certJSON
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		t.Fatalf("certificates --json: %v: %s", err, out)
	}
	return certs
}

// TestDeadNameServersDoNotDelayHealthy: ten customers whose name servers
// never answer are checked beside a healthy one; the healthy certificate
// turns active as fast as on its own, and the dead ones say they are backed
// off.
func TestDeadNameServersDoNotDelayHealthy(t *testing.T) {
	s := e2e.Start(t, e2e.Options{ExtraStubs: e2e.DeadServers(t, 10)})
	var b strings.Builder
	for k := range 10 {
		fmt.Fprintf(&b, "d%d d%d.dead.test\n", k, k)
	}
	b.WriteString("healthy healthy.example.test\n")
	batch := filepath.Join(s.Dir, "batch.txt")
	if err := os.WriteFile(batch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := s.CLI("issue", "--batch", batch)
	if code != 0 {
		t.Fatalf("issue --batch: exit %d: %s", code, out)
	}
	// Let the dead customers' checks take their slots first.
	time.Sleep(2 * time.Second)
	healthy := map[string]string{}
	for owner, target := range records(t, out) {
		if strings.Contains(owner, "healthy") {
			healthy[owner] = target
		}
	}
	if len(healthy) != 1 {
		t.Fatalf("no record for the healthy certificate in:\n%s", out)
	}
	s.SetCNAMEs(healthy)
	published := time.Now()
	waitActive(t, s, "healthy", 30*time.Second)
	took := time.Since(published)
	t.Logf("healthy active %.1fs after its CNAME was published, beside 10 dead customers", took.Seconds())
	// Re-checked every second, ordered in well under a second: a few
	// seconds at most, never a dead server's timeout per dead customer.
	if took > 15*time.Second {
		t.Errorf("healthy certificate took %s beside dead customers", took)
	}
	harness.Eventually(t, 45*time.Second, time.Second, "dead customers backed off", func() error {
		for _, c := range listCerts(t, s, "--domain", "dead.test") {
			if c.Status != "pending delegation" || c.CheckFailures < 2 || !strings.Contains(c.LastError, "backing off") {
				return fmt.Errorf("%s: %s, %d failures: %s", c.Name, c.Status, c.CheckFailures, c.LastError)
			}
		}
		return nil
	})
}

// rateLimiter answers new-order requests with 429 rateLimited and a
// Retry-After while its window runs, the first time one arrives.
type rateLimiter struct {
	retryAfter time.Duration

	mu     sync.Mutex
	first  time.Time   // first 429
	orders []time.Time // new-order requests passed to Pebble
}

func (l *rateLimiter) front(pebble http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/order-plz" {
			pebble.ServeHTTP(w, r)
			return
		}
		l.mu.Lock()
		now := time.Now()
		if l.first.IsZero() {
			l.first = now
		}
		limited := now.Before(l.first.Add(l.retryAfter))
		if !limited {
			l.orders = append(l.orders, now)
		}
		l.mu.Unlock()
		if !limited {
			pebble.ServeHTTP(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", fmt.Sprint(int(time.Until(l.first.Add(l.retryAfter)).Seconds()+1)))
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders (test)","status":429}`)
	})
}

// TestRateLimitPausesAccount: a 429 rateLimited with Retry-After pauses
// ordering at that CA, i.e. for its account (no new order reaches the CA
// before it ends; with one CA nothing else is asked), is shown in status
// and logs, and ordering resumes after it.
func TestRateLimitPausesAccount(t *testing.T) {
	rl := &rateLimiter{retryAfter: 6 * time.Second}
	s := e2e.Start(t, e2e.Options{CAFront: rl.front})
	out, code := s.CLIAnswering("first first.example.test\nsecond second.example.test\nthird third.example.test\n", "issue", "--batch", "-")
	if code != 0 {
		t.Fatalf("issue --batch -: exit %d: %s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	harness.Eventually(t, 30*time.Second, 200*time.Millisecond, "rate limit shown", func() error {
		out, _ := s.CLI("certificates")
		if !strings.Contains(out, "CA default paused until") || !strings.Contains(out, "(rate_limited): ") || !strings.Contains(out, "too many new orders (test)") {
			return fmt.Errorf("not shown yet:\n%s", out)
		}
		return nil
	})
	for _, name := range []string{"first", "second", "third"} {
		waitActive(t, s, name, 60*time.Second)
	}
	rl.mu.Lock()
	first, orders := rl.first, append([]time.Time(nil), rl.orders...)
	rl.mu.Unlock()
	if len(orders) < 3 {
		t.Fatalf("%d new orders reached the CA after the pause, want 3", len(orders))
	}
	for _, o := range orders {
		if o.Before(first.Add(rl.retryAfter)) {
			t.Errorf("a new order reached the CA %s after the 429, inside its %s Retry-After", o.Sub(first), rl.retryAfter)
		}
	}
	log, err := os.ReadFile(s.Daemon.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), `msg="CA paused after a failure on its side" component=issuer ca=default kind=rate_limited`); n != 1 {
		t.Errorf("the log says the account was paused %d times, want once:\n%s", n, log)
	}
	if strings.Contains(string(log), "attempt failed") {
		t.Errorf("the rate limit counted as a failed attempt:\n%s", log)
	}
}

// TestARIRetryAfterHonoured: the CA's renewal information says to ask
// again in 10 minutes (Pebble says 6 hours); the next check is planned
// then, not a day later.
func TestARIRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	asked := 0
	front := func(pebble http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/draft-ietf-acme-ari-03/renewalInfo/") {
				mu.Lock()
				asked++
				mu.Unlock()
				rec := &headerRewriter{ResponseWriter: w, retryAfter: "600"}
				pebble.ServeHTTP(rec, r)
				return
			}
			pebble.ServeHTTP(w, r)
		})
	}
	s := e2e.Start(t, e2e.Options{CAFront: front})
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "ari", "-d", "ari.example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	waitActive(t, s, "ari", 60*time.Second)
	var c certJSON
	harness.Eventually(t, 30*time.Second, 200*time.Millisecond, "renewal planned", func() error {
		for _, x := range listCerts(t, s, "--status", "active") {
			if x.Name == "ari" && !x.RenewalInfoAt.IsZero() {
				c = x
				return nil
			}
		}
		return fmt.Errorf("not planned yet")
	})
	mu.Lock()
	n := asked
	mu.Unlock()
	if n == 0 {
		t.Fatal("the daemon never asked the CA's renewal information")
	}
	if in := time.Until(c.RenewalInfoAt); in < 9*time.Minute || in > 10*time.Minute {
		t.Errorf("renewal information asked again in %s, want the CA's Retry-After of 10m", in.Round(time.Second))
	}
}

// headerRewriter replaces the Retry-After header of a response.
type headerRewriter struct {
	http.ResponseWriter
	retryAfter string
}

func (h *headerRewriter) WriteHeader(code int) {
	h.Header().Set("Retry-After", h.retryAfter)
	h.ResponseWriter.WriteHeader(code)
}

// TestBatchValidationAndIdempotence: a batch file with bad lines is refused
// whole, every bad line named, and nothing is created; a good one creates
// every certificate and prints the records; the same file again changes
// nothing and prints the same records. The operator API takes the same
// batch in one request.
func TestBatchValidationAndIdempotence(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	bad := "# customers\na a.example.test\n\nb under_score!.example.test\nlonely\na b.example.test # the name again\n"
	path := filepath.Join(s.Dir, "bad.txt")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := s.CLI("issue", "--batch", path)
	if code == 0 || !strings.Contains(out, "line 5:") {
		t.Fatalf("a line without a domain: exit %d, output:\n%s", code, out)
	}
	bad = strings.Replace(bad, "lonely\n", "", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = s.CLI("issue", "--batch", path)
	if code == 0 || !strings.Contains(out, "line 4:") || !strings.Contains(out, "line 5:") || !strings.Contains(out, "nothing created") {
		t.Fatalf("bad domain and repeated name: exit %d, output:\n%s", code, out)
	}
	if certs := listCerts(t, s); len(certs) != 0 {
		t.Fatalf("a refused batch created %d certificates", len(certs))
	}
	good := "# customers\na a.example.test *.a.example.test\nb b.example.test\nc c.example.test www.c.example.test\n"
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	first, code := s.CLI("issue", "--batch", path)
	if code != 0 || !strings.Contains(first, "3 certificates: 3 created, 0 changed, 0 unchanged") {
		t.Fatalf("good batch: exit %d:\n%s", code, first)
	}
	recs := records(t, first)
	if len(recs) != 4 {
		t.Fatalf("%d records printed, want 4 (a, b, c, www.c):\n%s", len(recs), first)
	}
	again, code := s.CLI("issue", "--batch", path)
	if code != 0 || !strings.Contains(again, "3 certificates: 0 created, 0 changed, 3 unchanged") {
		t.Fatalf("same batch again: exit %d:\n%s", code, again)
	}
	if fmt.Sprint(records(t, again)) != fmt.Sprint(recs) {
		t.Errorf("records changed on the re-run:\n%s\nthen\n%s", first, again)
	}
	if certs := listCerts(t, s, "--status", "pending"); len(certs) != 3 {
		t.Errorf("%d pending certificates, want 3", len(certs))
	}
	// The operator API: one request, refused whole with the problems.
	body := `{"certificates":[{"name":"d","domains":["d.example.test"]},{"name":"e","domains":["bad..example.test"]}],"lines":[7,8]}`
	req, _ := http.NewRequest(http.MethodPost, s.APIURL+"/v1/batch", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var refusal struct {
		Problems []struct {
			Line  int    `json:"line"`
			Error string `json:"error"`
		} `json:"problems"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&refusal); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || len(refusal.Problems) != 1 || refusal.Problems[0].Line != 8 {
		t.Errorf("POST /v1/batch with a bad domain: %d %+v, want 400 naming line 8", resp.StatusCode, refusal)
	}
	if certs := listCerts(t, s); len(certs) != 3 {
		t.Errorf("%d certificates after a refused API batch, want 3", len(certs))
	}
}

// TestLeaseLostDuringDeployHook: while the deploy hook runs, another
// instance takes the certificate's lease; the hook is stopped and the daemon
// writes nothing more to the certificate.
func TestLeaseLostDuringDeployHook(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	marker := filepath.Join(s.Dir, "hook-running")
	hook := filepath.Join(s.Dir, "slow-hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\ntouch "+marker+"\nsleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "deploy_hook = ", "deploy_hook = \""+hook+"\"\n# was: deploy_hook = ", 1))
	if err := os.WriteFile(s.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "hooked", "-d", "hooked.example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	harness.Eventually(t, 60*time.Second, 100*time.Millisecond, "deploy hook running", func() error {
		_, err := os.Stat(marker)
		return err
	})
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.Dir, "delegated.db")+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var before string
	if err := db.QueryRow(`SELECT status FROM certificates WHERE name = 'hooked'`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	// Another instance takes the lease over (as after an expiry).
	if _, err := db.Exec(`UPDATE leases SET holder = 'thief', token = token + 1, expires_at = ? WHERE name = 'cert:hooked'`,
		time.Now().Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, 200*time.Millisecond, "daemon notices the lost lease", func() error {
		log, _ := os.ReadFile(s.Daemon.LogPath)
		if !strings.Contains(string(log), "recording the issued certificate failed") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	var after string
	var updated int64
	if err := db.QueryRow(`SELECT status, updated_at FROM certificates WHERE name = 'hooked'`).Scan(&after, &updated); err != nil {
		t.Fatal(err)
	}
	if after != before || after == "active" {
		t.Errorf("status %q after the lease was lost during the hook (was %q): the daemon wrote without its lease", after, before)
	}
	log, _ := os.ReadFile(s.Daemon.LogPath)
	if !strings.Contains(string(log), "certificate lease lost") {
		t.Errorf("the log does not say the lease was lost:\n%s", log)
	}
}

// TestCAForgotAccount: the CA restarts with an empty database (as after a
// reset, or a new staging environment) and answers accountDoesNotExist;
// the daemon registers the same key again and the next certificate is
// issued without the operator doing anything.
func TestCAForgotAccount(t *testing.T) {
	s := e2e.Start(t, e2e.Options{DeferPebble: true})
	s.StartPebble()
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "before", "-d", "before.example.test", "-d", "after.example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	s.SetCNAMEs(records(t, out))
	waitActive(t, s, "before", 60*time.Second)
	if err := s.Pebble.Proc.Stop(); err != nil {
		t.Fatal(err)
	}
	s.StartPebble()
	out, code = s.CLI("issue", "--cert-name", "after", "-d", "after.example.test")
	if code != 0 {
		t.Fatalf("issue after the CA forgot the account: exit %d: %s", code, out)
	}
	log, err := os.ReadFile(s.Daemon.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `msg="acme account unknown to the CA; registered it again with the same key"`) {
		t.Errorf("the log does not say the account was registered again:\n%s", log)
	}
}
