package httpapi

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/store"

	"github.com/delegated/delegated/e2e/harness"
)

// hardEnv is an API on a real SQLite store with the options a test needs,
// its metrics and its log.
type hardEnv struct {
	*testEnv
	path string
	reg  *prometheus.Registry
	log  *harness.LockedBuffer
}

func newHardEnv(t *testing.T, opts Options) *hardEnv {
	t.Helper()
	e := newHardEnvOpts(t, opts)
	srv := httptest.NewServer(e.api.Handler())
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// newHardEnvOpts builds the API without serving it.
func newHardEnvOpts(t *testing.T, opts Options) *hardEnv {
	t.Helper()
	path := t.TempDir() + "/test.db"
	st, err := store.Open(context.Background(), "sqlite3", path, store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &harness.LockedBuffer{}
	reg := prometheus.NewRegistry()
	opts.Zone = testZone
	opts.BcryptCost = bcrypt.MinCost
	opts.Metrics = reg
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	api, err := New(opts, st)
	if err != nil {
		t.Fatal(err)
	}
	return &hardEnv{testEnv: &testEnv{st: st, api: api}, path: path, reg: reg, log: logs}
}

func (e *hardEnv) requests(route, status string) float64 {
	c, err := e.api.metrics.requests.GetMetricWithLabelValues(route, status)
	if err != nil {
		return -1
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestFailedAuthenticationLimit: a wrong-key flood from one address used to
// cost one bcrypt per request forever. After AuthFailureRate failures in
// AuthFailurePer the source gets 429 without bcrypt, while a credential it
// already proved keeps working; the budget refills with time.
func TestFailedAuthenticationLimit(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	e := newHardEnv(t, Options{AuthFailureRate: 3, AuthFailurePer: time.Minute, Now: clock})
	good := e.register(t, "")
	if status, body := e.update(t, good, txtValue(1)); status != 200 {
		t.Fatalf("update with the right key: %d %s", status, body)
	}
	bad := good
	bad.Password = strings.Repeat("x", 40)
	for i := range 3 {
		if status, body := e.update(t, bad, txtValue(2)); status != http.StatusUnauthorized {
			t.Fatalf("wrong key #%d: %d %s, want 401", i+1, status, body)
		}
	}
	// Every bcrypt worker held, no rescue: a request that needed bcrypt
	// would hang until the client's timeout.
	e.api.auth.bcrypt.setStallAfter(time.Hour)
	release := make(chan struct{})
	var busy []<-chan error
	for range e.api.opts.BcryptConcurrency {
		busy = append(busy, hold(e.api.auth.bcrypt, release))
	}
	status, headers, body := e.do(t, "POST", "/update", "", `{"subdomain":"`+bad.Subdomain+`","txt":"`+txtValue(3)+`"}`,
		map[string]string{"X-Api-User": bad.Username, "X-Api-Key": bad.Password})
	if status != http.StatusTooManyRequests || body != `{"error": "too_many_failures"}` || headers.Get("Retry-After") != "60" {
		t.Errorf("wrong key after the budget: %d %q Retry-After %q, want 429 too_many_failures 60", status, body, headers.Get("Retry-After"))
	}
	if status, body := e.update(t, good, txtValue(4)); status != 200 {
		t.Errorf("cached right key from the limited source: %d %s, want 200", status, body)
	}
	close(release)
	for _, done := range busy {
		<-done
	}
	clockMu.Lock()
	now = now.Add(time.Minute)
	clockMu.Unlock()
	if status, _ := e.update(t, bad, txtValue(5)); status != http.StatusUnauthorized {
		t.Errorf("wrong key after the budget refilled: %d, want 401 (checked again)", status)
	}
}

// TestClientGoneIsNotAServerError: a client that disconnects while its
// request waits (bcrypt, the store) made the request fail with the
// context's error, counted as status="500" and logged as a warning or
// error. It is a 499 now, logged at debug.
func TestClientGoneIsNotAServerError(t *testing.T) {
	e := newHardEnv(t, Options{})
	good := e.register(t, "")
	for _, route := range []string{"register", "update"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		body := `{"subdomain":"` + good.Subdomain + `","txt":"` + txtValue(1) + `"}`
		req := httptest.NewRequestWithContext(ctx, "POST", "/"+route, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1234"
		req.Header.Set("X-Api-User", good.Username)
		req.Header.Set("X-Api-Key", good.Password)
		rec := httptest.NewRecorder()
		e.api.Handler().ServeHTTP(rec, req)
		if rec.Code != statusClientClosedRequest {
			t.Errorf("%s with the client gone: %d %s, want 499", route, rec.Code, rec.Body)
		}
		if n := e.requests(route, "499"); n != 1 {
			t.Errorf("%s: %v requests counted with status 499, want 1", route, n)
		}
		if n := e.requests(route, "500"); n != 0 {
			t.Errorf("%s: %v requests counted with status 500, want 0", route, n)
		}
	}
	logs := e.log.String()
	if strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "level=WARN") {
		t.Errorf("a client going away was logged above debug:\n%s", logs)
	}
	if !strings.Contains(logs, "client went away") {
		t.Errorf("no debug line about the client going away:\n%s", logs)
	}
}

// TestHealthWhenWritesFail: with a full disk every /update failed with 500
// while /health said 200. Writes that fail make /health 503; it recovers
// once writes work again.
func TestHealthWhenWritesFail(t *testing.T) {
	e := newHardEnv(t, Options{})
	good := e.register(t, "")
	if status, _, _ := e.do(t, "GET", "/health", "", "", nil); status != 200 {
		t.Fatalf("healthy: %d", status)
	}
	// Another connection to the same file makes every value write and the
	// health probe fail, as SQLITE_FULL does.
	db, err := sql.Open("sqlite3", e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	triggers := map[string]string{
		"fail_values":       `CREATE TRIGGER fail_values BEFORE INSERT ON txt_values BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
		"fail_probe":        `CREATE TRIGGER fail_probe BEFORE UPDATE ON health_probe BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
		"fail_probe_insert": `CREATE TRIGGER fail_probe_insert BEFORE INSERT ON health_probe BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
	}
	for _, stmt := range triggers {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	if status, body := e.update(t, good, txtValue(1)); status != 500 || body != `{"error": "db_error"}` {
		t.Fatalf("update on a failing store: %d %s", status, body)
	}
	status, _, body := e.do(t, "GET", "/health", "", "", nil)
	if status != http.StatusServiceUnavailable || body != `{"error": "store_unavailable"}` {
		t.Fatalf("health while writes fail: %d %s, want 503 store_unavailable", status, body)
	}
	for name := range triggers {
		if _, err := db.Exec(`DROP TRIGGER ` + name); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, _ := e.do(t, "GET", "/health", "", "", nil)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health still %d after writes work again", status)
		}
		time.Sleep(100 * time.Millisecond) // the probe runs at most once a second
	}
}
