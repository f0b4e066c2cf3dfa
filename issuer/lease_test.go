package issuer

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// sharedDB is one database that several instances open, as separate
// processes would: a SQLite file, or a fresh schema in the test cluster.
type sharedDB struct{ driver, dsn string }

func newSharedDB(t *testing.T, kind string) sharedDB {
	t.Helper()
	if kind == "sqlite" {
		return sharedDB{"sqlite3", filepath.Join(t.TempDir(), "d.db")}
	}
	return sharedDB{"postgres", harness.PostgresSchema(t, "issuer_")}
}

// eachDB runs fn on a shared SQLite file and on a shared PostgreSQL schema.
func eachDB(t *testing.T, fn func(t *testing.T, db sharedDB)) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) { fn(t, newSharedDB(t, kind)) })
	}
}

// logBuffer collects an instance's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), "msg=\""+msg+"\"")
}

// instance opens its own store on db and builds an issuer on it, as one
// process of a multi-instance deployment.
func instance(t *testing.T, db sharedDB, id string, now func() time.Time, ttl time.Duration, tune ...func(*Options)) (*Issuer, *store.Store, *logBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := store.Open(ctx, db.driver, db.dsn, store.Options{Now: now, Logger: quiet()})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &logBuffer{}
	opts := Options{
		// No CA listens here: an attempt that does run fails at once and
		// says so in the log.
		Zone: "auth.example.org", Directory: "https://127.0.0.1:1/dir", Resolvers: []string{"127.0.0.1:1"},
		DeployDir: t.TempDir(), Now: now, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		InstanceID: id, LeaseTTL: ttl,
	}
	for _, f := range tune {
		f(&opts)
	}
	iss, err := New(opts, st, providers.NewLocal(st))
	if err != nil {
		t.Fatal(err)
	}
	return iss, st, logs
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holding reports whether i holds name's lease. A claim still asking for
// the lease (the placeholder hold, without done) does not count: a
// scheduler pass reserves locally before it asks, and a check that caught
// that moment failed the test once in CI although B never got the lease.
func (i *Issuer) holding(name string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	h := i.busy[name]
	return h != nil && h.done != nil
}

// TestLeaseExcludesOtherInstances: while instance A works on a
// certificate, instance B can neither start an attempt on it nor run an
// operator action (retry, renew, revoke, delete); once A is done, B can.
func TestLeaseExcludesOtherInstances(t *testing.T) {
	eachDB(t, func(t *testing.T, db sharedDB) {
		ctx := context.Background()
		a, st, _ := instance(t, db, "a", time.Now, time.Minute)
		b, _, blog := instance(t, db, "b", time.Now, time.Minute)
		c := store.Certificate{Name: "ex", Domains: []string{"example.com"}, Status: string(StatusFailed), CertPEM: "CURRENT", KeyPEM: "KEY", LastError: "before"}
		if err := st.SaveCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		if !a.claim("ex") {
			t.Fatal("A could not claim a free certificate")
		}
		if b.claim("ex") {
			t.Fatal("B claimed the certificate A holds")
		}
		if _, err := b.Retry(ctx, "ex"); err != nil {
			t.Fatalf("retry on B: %v", err)
		}
		if _, _, err := b.Renew(ctx, "ex", true); err != nil {
			t.Fatalf("renew on B: %v", err)
		}
		if _, err := b.Revoke(ctx, "ex", ""); err == nil || !strings.Contains(err.Error(), "in flight") {
			t.Fatalf("revoke on B: %v, want busy", err)
		}
		if err := b.Delete(ctx, "ex"); err == nil || !strings.Contains(err.Error(), "in flight") {
			t.Fatalf("delete on B: %v, want busy", err)
		}
		b.orderDue(ctx, "ex")
		got, err := st.CertificateByName(ctx, "ex")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != c.Status || got.LastError != c.LastError || got.Attempts != 0 || b.holding("ex") || blog.count("order starting") != 0 {
			t.Fatalf("B acted on a certificate A holds: %+v", got)
		}
		a.release("ex")
		if !b.claim("ex") {
			t.Fatal("B could not claim the certificate A released")
		}
		b.release("ex")
	})
}

// TestLeaseTakeoverAfterExpiry: an instance that stops renewing (it died,
// or cannot reach the database) loses the certificate once the lease
// expires; another takes it, and the old holder's work is cancelled at its
// next renewal instead of carrying on beside the new holder.
func TestLeaseTakeoverAfterExpiry(t *testing.T) {
	eachDB(t, func(t *testing.T, db sharedDB) {
		clock := &fakeClock{now: time.Now()}
		const ttl = 300 * time.Millisecond
		a, _, alog := instance(t, db, "a", clock.Now, ttl)
		b, _, _ := instance(t, db, "b", clock.Now, ttl)
		if !a.claim("ex") {
			t.Fatal("A could not claim a free certificate")
		}
		a.mu.Lock()
		work := a.busy["ex"].ctx
		a.mu.Unlock()
		if b.claim("ex") {
			t.Fatal("B claimed a live lease")
		}
		// A's clock-driven renewals stop counting: to the database the
		// lease has run out, as if A had died.
		clock.Advance(2 * ttl)
		if !b.claim("ex") {
			t.Fatal("B could not take over the expired lease")
		}
		defer b.release("ex")
		select {
		case <-work.Done():
		case <-time.After(10 * ttl):
			t.Fatal("A's work was not cancelled after it lost the lease")
		}
		waitFor(t, 5*time.Second, "A logs the loss", func() bool { return alog.count("certificate lease lost; stopping work on it") == 1 })
		a.release("ex")
		// A giving up a lease it lost leaves B's untouched.
		if a.claim("ex") {
			t.Fatal("A re-took the lease B holds")
		}
	})
}

// stallingCA is a TLS server standing in for the CA's directory: each
// request waits until release is closed, then fails. It counts requests, so
// a test sees how many attempts reached the CA.
type stallingCA struct {
	srv      *httptest.Server
	requests atomic.Int64
	release  chan struct{}
	once     sync.Once
}

func newStallingCA(t *testing.T) *stallingCA {
	ca := &stallingCA{release: make(chan struct{})}
	ca.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ca.requests.Add(1)
		select {
		case <-ca.release:
		case <-r.Context().Done():
		}
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() {
		ca.unblock()
		ca.srv.Close()
	})
	return ca
}

func (ca *stallingCA) unblock() { ca.once.Do(func() { close(ca.release) }) }

func (ca *stallingCA) tune(o *Options) {
	o.Directory = ca.srv.URL + "/dir"
	o.CARoots = x509.NewCertPool()
	o.CARoots.AddCert(ca.srv.Certificate())
}

// passClock is the real clock counting its calls: the scheduler reads it
// once at the start of every pass, so two more calls prove a whole pass ran.
type passClock struct{ calls atomic.Int64 }

func (c *passClock) Now() time.Time {
	c.calls.Add(1)
	return time.Now()
}

// TestSchedulersShareWork: instance A's scheduler starts an attempt on a
// due certificate, which stalls at the CA. Instance B's scheduler, running
// meanwhile, passes over the certificate without starting a second
// attempt; once A's attempt ends (failed, retry in 15 minutes), B, reading
// the certificate under the lease, finds it no longer due.
func TestSchedulersShareWork(t *testing.T) {
	eachDB(t, func(t *testing.T, db sharedDB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ca := newStallingCA(t)
		clock := &passClock{}
		a, st, alog := instance(t, db, "a", time.Now, time.Second, ca.tune)
		b, _, blog := instance(t, db, "b", clock.Now, time.Second, ca.tune)
		if err := st.SaveCertificate(ctx, store.Certificate{Name: "ex", Domains: []string{"example.com"}, Status: string(StatusProcessing), NextAction: time.Now()}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		run := func(iss *Issuer) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				iss.Run(ctx)
			}()
		}
		run(a)
		waitFor(t, 20*time.Second, "A's attempt reaches the CA", func() bool { return ca.requests.Load() == 1 })
		passes := clock.calls.Load()
		run(b)
		waitFor(t, 20*time.Second, "B's scheduler completes a pass", func() bool { return clock.calls.Load() >= passes+2 })
		if n := ca.requests.Load(); n != 1 || b.holding("ex") || blog.count("order starting") != 0 {
			t.Fatalf("B started work on the certificate A is attempting: %d CA requests, B holding %v", n, b.holding("ex"))
		}
		ca.unblock()
		waitFor(t, 20*time.Second, "A records the failed attempt and lets go", func() bool {
			c, err := st.CertificateByName(ctx, "ex")
			return err == nil && c.Attempts == 1 && !a.holding("ex")
		})
		// B waits minutes now (nothing due); wake it for two passes.
		passes = clock.calls.Load()
		b.poke()
		waitFor(t, 20*time.Second, "B's scheduler passes again", func() bool { return clock.calls.Load() >= passes+1 })
		b.poke()
		waitFor(t, 20*time.Second, "B's scheduler completes that pass", func() bool { return clock.calls.Load() >= passes+2 })
		cancel()
		wg.Wait()
		starts := alog.count("order starting") + blog.count("order starting")
		c, err := st.CertificateByName(context.Background(), "ex")
		if err != nil {
			t.Fatal(err)
		}
		if starts != 1 || c.Attempts != 1 || ca.requests.Load() != 1 {
			t.Fatalf("%d attempts started (A %d, B %d), %d recorded, %d CA requests; want exactly one", starts, alog.count("order starting"), blog.count("order starting"), c.Attempts, ca.requests.Load())
		}
	})
}

// TestTakeoverFromDeadHolder: a certificate left processing under the
// lease of an instance that died is attempted by a live instance's
// scheduler once that lease expires, and not before.
func TestTakeoverFromDeadHolder(t *testing.T) {
	eachDB(t, func(t *testing.T, db sharedDB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const ttl = 600 * time.Millisecond
		b, st, blog := instance(t, db, "b", time.Now, ttl)
		if err := st.SaveCertificate(ctx, store.Certificate{Name: "ex", Domains: []string{"example.com"}, Status: string(StatusProcessing), NextAction: time.Now()}); err != nil {
			t.Fatal(err)
		}
		// The lease expires 2·ttl after the store's clock read inside
		// AcquireLease: not before this moment (on a loaded machine the
		// call itself can take longer than B's poll interval).
		expires := time.Now().Add(2 * ttl)
		if _, err := st.AcquireLease(ctx, leaseName("ex"), "dead", 2*ttl); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.Run(ctx)
		}()
		waitFor(t, 20*time.Second, "B takes over and attempts", func() bool { return blog.count("order starting") == 1 })
		took := time.Now()
		cancel()
		<-done
		if took.Before(expires) {
			t.Fatalf("B attempted at %v, before the dead holder's lease expired at %v", took, expires)
		}
		// A poll interval (ttl/3) plus the attempt's start-up, with room
		// for a loaded machine; production's bound is 20 s.
		if lag := took.Sub(expires); lag > 5*time.Second {
			t.Errorf("takeover %v after expiry; want within a poll interval", lag)
		}
		t.Logf("takeover %v after the dead holder's lease expired", took.Sub(expires).Round(time.Millisecond))
	})
}
