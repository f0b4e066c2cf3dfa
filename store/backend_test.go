package store

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
)

// backend is one database a test runs against. dsn is fresh per test: a
// file in a temporary folder, or a schema of its own in the test cluster
// (so tests never see each other's rows or notifications).
type backend struct {
	name   string
	driver string
	dsn    string
}

// newBackend makes a fresh backend of the named kind.
func newBackend(t *testing.T, name string) backend {
	t.Helper()
	if name == "postgres" {
		return backend{name: name, driver: "postgres", dsn: harness.PostgresSchema(t, "t_")}
	}
	return backend{name: name, driver: "sqlite3", dsn: filepath.Join(t.TempDir(), "delegated.db")}
}

// eachBackend runs fn as a subtest on SQLite and on PostgreSQL.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			fn(t, newBackend(t, name))
		})
	}
}

// testClock is an injectable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openStore opens b with opts and closes it at the end of the test.
func openStore(t testing.TB, b backend, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Open(ctx, b.driver, b.dsn, opts)
	if err != nil {
		t.Fatalf("open %s store: %v", b.name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// recorder is a subscriber that keeps every state it receives.
type recorder struct {
	mu     sync.Mutex
	states []SubdomainState
	// latest is the newest state per subdomain, as a view would hold it.
	latest map[string]SubdomainState
	signal chan struct{}
}

func record(s *Store) *recorder {
	r := &recorder{latest: map[string]SubdomainState{}, signal: make(chan struct{}, 1)}
	s.Subscribe(func(st SubdomainState) {
		r.mu.Lock()
		r.states = append(r.states, st)
		if prev, ok := r.latest[st.Subdomain]; !ok || st.Version >= prev.Version {
			r.latest[st.Subdomain] = st
		}
		r.mu.Unlock()
		select {
		case r.signal <- struct{}{}:
		default:
		}
	})
	return r
}

func (r *recorder) all() []SubdomainState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]SubdomainState(nil), r.states...)
}

// waitFor polls cond on every delivered state until it holds or the
// deadline passes.
func (r *recorder) waitFor(t testing.TB, what string, cond func(latest map[string]SubdomainState) bool) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		ok := cond(r.latest)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.signal:
		case <-tick.C:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s; latest states: %+v", what, r.latest)
		}
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
