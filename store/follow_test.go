package store

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	"github.com/google/uuid"
)

// These tests run several Stores against one PostgreSQL schema, as several
// delegated instances would.

func postgresBackend(t *testing.T) backend {
	return backend{name: "postgres", driver: "postgres", dsn: harness.PostgresSchema(t, "t_")}
}

func hasValues(sub string, want ...string) func(map[string]SubdomainState) bool {
	return func(m map[string]SubdomainState) bool {
		st, ok := m[sub]
		return ok && !st.Deleted && slices.Equal(st.Values, want)
	}
}

func isDeleted(sub string) func(map[string]SubdomainState) bool {
	return func(m map[string]SubdomainState) bool { return m[sub].Deleted }
}

// TestFollowOtherInstances: three stores on one database, as three
// processes would be (on SQLite: the daemon, `delegated account` and
// import-acme-dns on one file), each see every write of the others.
func TestFollowOtherInstances(t *testing.T) {
	eachBackend(t, testFollowOtherInstances)
}

func testFollowOtherInstances(t *testing.T, b backend) {
	ctx := testCtx(t)
	clock := newTestClock()
	opts := Options{Now: clock.Now, ValueLifetime: time.Hour, ValuesPerAccount: 3, PollInterval: 20 * time.Millisecond}
	a, bb, c := openStore(t, b, opts), openStore(t, b, opts), openStore(t, b, opts)
	recs := map[string]*recorder{"a": record(a), "b": record(bb), "c": record(c)}

	acct := mustCreate(t, a, newAccount())
	gone := mustCreate(t, c, newAccount())
	steps := []struct {
		name  string
		do    func() error
		check func(map[string]SubdomainState) bool
	}{
		{"account created on a", func() error { return nil }, hasValues(acct.Subdomain)},
		{"value added on a", func() error { return a.AddValue(ctx, acct.Subdomain, "1") }, hasValues(acct.Subdomain, "1")},
		{"value added on b", func() error { return bb.AddValue(ctx, acct.Subdomain, "2") }, hasValues(acct.Subdomain, "1", "2")},
		{"values added on a and c", func() error {
			if err := a.AddValue(ctx, acct.Subdomain, "3"); err != nil {
				return err
			}
			return c.AddValue(ctx, acct.Subdomain, "4")
		}, hasValues(acct.Subdomain, "2", "3", "4")},
		{"value removed on c", func() error { return c.RemoveValue(ctx, acct.Subdomain, "3") }, hasValues(acct.Subdomain, "2", "4")},
		{"account deleted on b", func() error { return bb.DeleteAccount(ctx, gone.Username) }, isDeleted(gone.Subdomain)},
		{"expired on a only", func() error {
			clock.Advance(2 * time.Hour)
			return a.ExpireValues(ctx)
		}, hasValues(acct.Subdomain)},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for name, r := range recs {
			r.waitFor(t, step.name+" on "+name, step.check)
		}
	}
	// Every instance saw versions in increasing order per subdomain once
	// the view's rule (ignore older) is applied; check no instance ever
	// received the same subdomain state at two different versions out of
	// order with different content after applying.
	for name, r := range recs {
		if err := r.ordered(); err != nil {
			t.Errorf("instance %s: %v", name, err)
		}
	}
}

// ordered checks that, applying states with the view's rule, the final
// state per subdomain is the one with the highest version.
func (r *recorder) ordered() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	best := map[string]int64{}
	for _, st := range r.states {
		best[st.Subdomain] = max(best[st.Subdomain], st.Version)
	}
	for sub, v := range best {
		if r.latest[sub].Version != v {
			return errors.New("latest state of " + sub + " is not the newest version")
		}
	}
	return nil
}

// proxy forwards TCP connections on loopback to target and can cut them
// all, which to the instance behind it is the database going away.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// cut closes every proxied connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// via returns dsn with its host and port replaced by the proxy's.
func (p *proxy) via(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		p.t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func proxied(t *testing.T, b backend) (*proxy, backend) {
	u, err := url.Parse(b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	return p, backend{name: b.name + " via proxy", driver: b.driver, dsn: p.via(b.dsn)}
}

// TestFollowReconnect cuts one instance off the database: it must report
// unhealthy, and once back, catch up with everything written meanwhile
// (values, a new account, a deleted account) from its last change sequence.
func TestFollowReconnect(t *testing.T) {
	b := postgresBackend(t)
	ctx := testCtx(t)
	p, viaProxy := proxied(t, b)
	a := openStore(t, b, Options{})
	cutOff := openStore(t, viaProxy, Options{ReconnectDelay: 100 * time.Millisecond})
	rec := record(cutOff)

	acct := mustCreate(t, a, newAccount())
	gone := mustCreate(t, a, newAccount())
	if err := a.AddValue(ctx, acct.Subdomain, "before"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "value before the cut", hasValues(acct.Subdomain, "before"))
	if err := cutOff.Ping(ctx); err != nil {
		t.Fatalf("healthy instance: Ping = %v", err)
	}

	p.cut()
	waitUntil(t, "cut-off instance reports unhealthy", func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return cutOff.Ping(pctx) != nil
	})
	fresh := newAccount()
	for _, do := range []func() error{
		func() error { return a.AddValue(ctx, acct.Subdomain, "during-1") },
		func() error { return a.AddValue(ctx, acct.Subdomain, "during-2") },
		func() error { return a.CreateAccount(ctx, fresh) },
		func() error { return a.AddValue(ctx, fresh.Subdomain, "fresh") },
		func() error { return a.DeleteAccount(ctx, gone.Username) },
	} {
		if err := do(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cutOff.Ping(ctx); err == nil {
		t.Fatal("instance without its change feed reports healthy")
	}

	p.restore()
	rec.waitFor(t, "catch-up after reconnect", func(m map[string]SubdomainState) bool {
		return hasValues(acct.Subdomain, "before", "during-1", "during-2")(m) &&
			hasValues(fresh.Subdomain, "fresh")(m) && isDeleted(gone.Subdomain)(m)
	})
	waitUntil(t, "instance healthy again", func() bool { return cutOff.Ping(ctx) == nil })
	// And it follows live changes again.
	if err := a.AddValue(ctx, acct.Subdomain, "after"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "value after reconnect", hasValues(acct.Subdomain, "before", "during-1", "during-2", "after"))
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// TestConfirmAll: with ConfirmAll, AddValue returns only once every live
// instance delivered the value; a dead instance is not waited for, and a
// live one that never catches up costs at most ConfirmTimeout.
func TestConfirmAll(t *testing.T) {
	b := postgresBackend(t)
	ctx := testCtx(t)
	hb := 100 * time.Millisecond
	writer := openStore(t, b, Options{ConfirmAll: true, ConfirmTimeout: 10 * time.Second, HeartbeatInterval: hb})
	others := []*Store{openStore(t, b, Options{ConfirmAll: true, HeartbeatInterval: hb}), openStore(t, b, Options{ConfirmAll: true, HeartbeatInterval: hb})}
	recs := []*recorder{record(others[0]), record(others[1])}
	acct := mustCreate(t, writer, newAccount())
	// A crashed instance's row stays behind with an old heartbeat.
	if _, err := writer.db.ExecContext(ctx, `INSERT INTO instances (id, heartbeat_at, applied_seq) VALUES ('crashed', $1, 0)`,
		time.Now().Add(-time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "three instances heart-beating", func() bool {
		var n int
		err := writer.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM instances WHERE heartbeat_at > $1`, time.Now().Add(-time.Second).UnixNano()).Scan(&n)
		return err == nil && n == 3
	})
	for i := range 20 {
		v := uuid.NewString()
		if err := writer.AddValue(ctx, acct.Subdomain, v); err != nil {
			t.Fatal(err)
		}
		// No waiting here: confirmation means the others already have it.
		for j, r := range recs {
			r.mu.Lock()
			st := r.latest[acct.Subdomain]
			r.mu.Unlock()
			if !slices.Contains(st.Values, v) {
				t.Fatalf("update %d returned before instance %d served it (has %+v)", i, j, st)
			}
		}
	}

	// A live instance that never applies anything: the wait is bounded.
	bounded := openStore(t, b, Options{ConfirmAll: true, ConfirmTimeout: 300 * time.Millisecond, HeartbeatInterval: hb})
	if _, err := writer.db.ExecContext(ctx, `INSERT INTO instances (id, heartbeat_at, applied_seq) VALUES ('stuck', $1, 0)`,
		time.Now().Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := bounded.AddValue(ctx, acct.Subdomain, "bounded"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("AddValue returned after %v although an instance lags; want the confirm wait", took)
	}
	if got, err := values(ctx, writer, acct.Subdomain); err != nil || !slices.Contains(got, "bounded") {
		t.Errorf("value not stored after unconfirmed update: %q, %v", got, err)
	}
}

func TestParseChange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		seq  int64
		sub  string
		fail bool
	}{
		{in: "12 abc", seq: 12, sub: "abc"},
		{in: formatChange(7, "x-y"), seq: 7, sub: "x-y"},
		{in: "", fail: true},
		{in: "12", fail: true},
		{in: "12 ", fail: true},
		{in: "x abc", fail: true},
		{in: "-3 abc", fail: true},
		{in: "0 abc", fail: true},
	} {
		seq, sub, err := parseChange(tc.in)
		if (err != nil) != tc.fail || seq != tc.seq || sub != tc.sub {
			t.Errorf("parseChange(%q) = %d, %q, %v", tc.in, seq, sub, err)
		}
	}
}

// TestAddValueEverywhere: without ConfirmAll, AddValueEverywhere (what the
// issuer presents challenge values with) still returns only once the other
// instances serve the value. Plain AddValue fails this test at its first
// value: the others are milliseconds behind.
func TestAddValueEverywhere(t *testing.T) {
	b := postgresBackend(t)
	ctx := testCtx(t)
	// Heartbeats an hour apart: only the writer's request to confirm at
	// once can make the instances record what they applied in time.
	const hb, confirmTimeout = time.Hour, 20 * time.Second
	writer := openStore(t, b, Options{ConfirmTimeout: confirmTimeout, HeartbeatInterval: hb})
	others := []*Store{openStore(t, b, Options{HeartbeatInterval: hb}), openStore(t, b, Options{HeartbeatInterval: hb})}
	recs := []*recorder{record(others[0]), record(others[1])}
	acct := mustCreate(t, writer, newAccount())
	waitUntil(t, "three instances heart-beating", func() bool {
		var n int
		err := writer.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM instances WHERE heartbeat_at > $1`, time.Now().Add(-time.Minute).UnixNano()).Scan(&n)
		return err == nil && n == 3
	})
	for i := range 10 {
		v := uuid.NewString()
		if err := writer.AddValueEverywhere(ctx, acct.Subdomain, v); err != nil {
			t.Fatal(err)
		}
		// Confirmed, not timed out: no live instance lags.
		var seq int64
		if err := writer.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM changes`).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		if lagging, err := writer.laggingInstances(ctx, seq); err != nil || len(lagging) != 0 {
			t.Fatalf("value %d: AddValueEverywhere returned with instances %v lagging (%v)", i, lagging, err)
		}
		for j, r := range recs {
			r.mu.Lock()
			st := r.latest[acct.Subdomain]
			r.mu.Unlock()
			if !slices.Contains(st.Values, v) {
				t.Fatalf("value %d: AddValueEverywhere returned before instance %d served it (has %+v)", i, j, st)
			}
		}
	}
}
