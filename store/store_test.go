package store

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func newAccount() Account {
	return Account{Username: uuid.NewString(), KeyHash: "$2a$10$hash", Subdomain: uuid.NewString()}
}

func mustCreate(t testing.TB, s *Store, a Account) Account {
	t.Helper()
	if err := s.CreateAccount(context.Background(), a); err != nil {
		t.Fatalf("create account: %v", err)
	}
	return a
}

func TestAccounts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		a := newAccount()
		a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
		mustCreate(t, s, a)

		for _, tc := range []struct {
			name string
			get  func() (Account, error)
		}{
			{"by username", func() (Account, error) { return s.AccountByUsername(ctx, a.Username) }},
			{"by subdomain", func() (Account, error) { return s.account(ctx, `subdomain = ?`, a.Subdomain) }},
		} {
			got, err := tc.get()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got.Username != a.Username || got.Subdomain != a.Subdomain || got.KeyHash != a.KeyHash ||
				!slices.Equal(got.AllowFrom, a.AllowFrom) || !got.CreatedAt.Equal(clock.Now()) {
				t.Errorf("%s: got %+v, want %+v created %v", tc.name, got, a, clock.Now())
			}
		}

		for _, tc := range []struct {
			name    string
			account Account
			want    error
		}{
			{"username taken", Account{Username: a.Username, KeyHash: "x", Subdomain: uuid.NewString()}, ErrConflict},
			{"subdomain taken", Account{Username: uuid.NewString(), KeyHash: "x", Subdomain: a.Subdomain}, ErrConflict},
			{"fresh", newAccount(), nil},
		} {
			if err := s.CreateAccount(ctx, tc.account); !errors.Is(err, tc.want) {
				t.Errorf("%s: CreateAccount = %v, want %v", tc.name, err, tc.want)
			}
		}
		if n, err := s.CountAccounts(ctx); err != nil || n != 2 {
			t.Errorf("CountAccounts = %d, %v; want 2", n, err)
		}
		for _, tc := range []struct {
			name string
			err  error
		}{
			{"unknown username", func() error { _, err := s.AccountByUsername(ctx, uuid.NewString()); return err }()},
			{"unknown subdomain", func() error { _, err := s.account(ctx, `subdomain = ?`, uuid.NewString()); return err }()},
			{"delete unknown", s.DeleteAccount(ctx, uuid.NewString())},
		} {
			if !errors.Is(tc.err, ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", tc.name, tc.err)
			}
		}
	})
}

// op is one step of a values scenario.
type op struct {
	add, remove string
	clear       bool
}

func TestValues(t *testing.T) {
	cases := []struct {
		name       string
		perAccount int
		ops        []op
		want       []string
	}{
		{"one value", 4, []op{{add: "a"}}, []string{"a"}},
		{"two updates in a row both live", 2, []op{{add: "a"}, {add: "b"}}, []string{"a", "b"}},
		{"rotation drops the oldest by sequence", 2, []op{{add: "a"}, {add: "b"}, {add: "c"}}, []string{"b", "c"}},
		{"rotation keeps per_account", 3, []op{{add: "a"}, {add: "b"}, {add: "c"}, {add: "d"}, {add: "e"}}, []string{"c", "d", "e"}},
		{"duplicate refreshes instead of storing twice", 4, []op{{add: "a"}, {add: "b"}, {add: "a"}}, []string{"b", "a"}},
		{"refreshed duplicate survives rotation", 2, []op{{add: "a"}, {add: "b"}, {add: "a"}, {add: "c"}}, []string{"a", "c"}},
		{"remove one", 4, []op{{add: "a"}, {add: "b"}, {remove: "a"}}, []string{"b"}},
		{"remove absent is no error", 4, []op{{add: "a"}, {remove: "zzz"}}, []string{"a"}},
		{"clear", 4, []op{{add: "a"}, {add: "b"}, {clear: true}}, nil},
		{"add after clear", 4, []op{{add: "a"}, {clear: true}, {add: "b"}}, []string{"b"}},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		stores := map[int]*Store{}
		for _, tc := range cases {
			s, ok := stores[tc.perAccount]
			if !ok {
				// Stores with different settings share one database, as
				// instances would.
				s = openStore(t, b, Options{ValuesPerAccount: tc.perAccount})
				stores[tc.perAccount] = s
			}
			rec := record(s)
			a := mustCreate(t, s, newAccount())
			for _, o := range tc.ops {
				var err error
				switch {
				case o.add != "":
					err = s.AddValue(ctx, a.Subdomain, o.add)
				case o.remove != "":
					err = s.RemoveValue(ctx, a.Subdomain, o.remove)
				case o.clear:
					err = s.ClearValues(ctx, a.Subdomain)
				}
				if err != nil {
					t.Fatalf("%s: %+v: %v", tc.name, o, err)
				}
			}
			got, err := values(ctx, s, a.Subdomain)
			if err != nil {
				t.Fatalf("%s: Values: %v", tc.name, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: Values = %q, want %q", tc.name, got, tc.want)
			}
			// What subscribers saw last must be what the database holds.
			rec.mu.Lock()
			pub := rec.latest[a.Subdomain]
			rec.mu.Unlock()
			if !slices.Equal(pub.Values, tc.want) || pub.Deleted {
				t.Errorf("%s: last published %+v, want values %q", tc.name, pub, tc.want)
			}
		}
	})
}

func TestValuesUnknownSubdomain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := openStore(t, b, Options{})
		rec := record(s)
		sub := uuid.NewString()
		for _, tc := range []struct {
			name string
			err  error
		}{
			{"add", s.AddValue(ctx, sub, "a")},
			{"remove", s.RemoveValue(ctx, sub, "a")},
			{"clear", s.ClearValues(ctx, sub)},
			{"values", func() error { _, err := values(ctx, s, sub); return err }()},
		} {
			if !errors.Is(tc.err, ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", tc.name, tc.err)
			}
		}
		if got := rec.all(); len(got) != 0 {
			t.Errorf("failed writes published %+v", got)
		}
	})
}

func TestExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now, ValueLifetime: time.Hour})
		a := mustCreate(t, s, newAccount())
		other := mustCreate(t, s, newAccount())
		if err := s.AddValue(ctx, a.Subdomain, "old"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(30 * time.Minute)
		for _, v := range []string{"new", "newer"} {
			if err := s.AddValue(ctx, a.Subdomain, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddValue(ctx, other.Subdomain, "other"); err != nil {
			t.Fatal(err)
		}
		rec := record(s)
		clock.Advance(31 * time.Minute) // "old" is 61 minutes old, the others 31.

		// Reads filter by expiry even before ExpireValues runs.
		for _, tc := range []struct {
			sub  string
			want []string
		}{{a.Subdomain, []string{"new", "newer"}}, {other.Subdomain, []string{"other"}}} {
			if got, err := values(ctx, s, tc.sub); err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("Values(%s) = %q, %v; want %q", tc.sub, got, err, tc.want)
			}
		}
		if err := s.ExpireValues(ctx); err != nil {
			t.Fatal(err)
		}
		got := rec.all()
		if len(got) != 1 || got[0].Subdomain != a.Subdomain || !slices.Equal(got[0].Values, []string{"new", "newer"}) {
			t.Fatalf("expiry published %+v, want only %s with [new newer]", got, a.Subdomain)
		}
		// Nothing more to expire: nothing published.
		if err := s.ExpireValues(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(rec.all()); n != 1 {
			t.Errorf("idle expiry published %d states", n)
		}
		clock.Advance(time.Hour)
		if err := s.ExpireValues(ctx); err != nil {
			t.Fatal(err)
		}
		// Two values of a expired together: one state for a, one for other.
		if got := rec.all()[1:]; len(got) != 2 || got[0].Subdomain == got[1].Subdomain {
			t.Errorf("full expiry published %+v, want one empty state each for %s and %s", got, a.Subdomain, other.Subdomain)
		}
		states := loadAll(t, s)
		for _, sub := range []string{a.Subdomain, other.Subdomain} {
			if st, ok := states[sub]; !ok || len(st.Values) != 0 {
				t.Errorf("after full expiry Load has %s = %+v (present %v), want present without values", sub, st, ok)
			}
		}
	})
}

func TestDeleteAccount(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := openStore(t, b, Options{})
		a := mustCreate(t, s, newAccount())
		if err := s.AddValue(ctx, a.Subdomain, "v"); err != nil {
			t.Fatal(err)
		}
		rec := record(s)
		if err := s.DeleteAccount(ctx, a.Username); err != nil {
			t.Fatal(err)
		}
		got := rec.all()
		if len(got) != 1 || !got[0].Deleted || got[0].Subdomain != a.Subdomain {
			t.Fatalf("delete published %+v", got)
		}
		if _, err := s.AccountByUsername(ctx, a.Username); !errors.Is(err, ErrNotFound) {
			t.Errorf("account after delete: %v", err)
		}
		if _, err := values(ctx, s, a.Subdomain); !errors.Is(err, ErrNotFound) {
			t.Errorf("values after delete: %v", err)
		}
		if err := s.DeleteAccount(ctx, a.Username); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if _, ok := loadAll(t, s)[a.Subdomain]; ok {
			t.Error("Load still has the deleted subdomain")
		}
		// The names are free again.
		mustCreate(t, s, a)
	})
}

func loadAll(t testing.TB, s *Store) map[string]SubdomainState {
	t.Helper()
	out := map[string]SubdomainState{}
	var order []string
	err := s.Load(context.Background(), func(st SubdomainState) error {
		if _, dup := out[st.Subdomain]; dup {
			t.Errorf("Load yielded %s twice", st.Subdomain)
		}
		out[st.Subdomain] = st
		order = append(order, st.Subdomain)
		return nil
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return out
}

func TestLoad(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := openStore(t, b, Options{})
		want := map[string][]string{}
		var last int64
		for i := range 50 {
			a := mustCreate(t, s, newAccount())
			want[a.Subdomain] = nil
			for j := range i % 4 {
				// Descending letters: oldest first is not alphabetical.
				v := string(rune('d' - j))
				if err := s.AddValue(ctx, a.Subdomain, v); err != nil {
					t.Fatal(err)
				}
				want[a.Subdomain] = append(want[a.Subdomain], v)
			}
		}
		got := loadAll(t, s)
		if len(got) != len(want) {
			t.Fatalf("Load yielded %d subdomains, want %d (accounts without values included)", len(got), len(want))
		}
		for sub, vs := range want {
			st := got[sub]
			if !slices.Equal(st.Values, vs) || st.Deleted || st.Version <= 0 {
				t.Errorf("Load %s = %+v, want values %q and a version", sub, st, vs)
			}
			last = max(last, st.Version)
		}
		// Versions are change sequences: a later write carries a larger one.
		a := mustCreate(t, s, newAccount())
		if st := loadAll(t, s)[a.Subdomain]; st.Version <= last {
			t.Errorf("new account version %d not above %d", st.Version, last)
		}
		stop := errors.New("stop")
		n := 0
		if err := s.Load(ctx, func(SubdomainState) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Errorf("Load with failing callback: %v after %d calls", err, n)
		}
	})
}

func TestCountValues(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		now := time.Unix(1_800_000_000, 0)
		s := openStore(t, b, Options{ValuesPerAccount: 2, ValueLifetime: time.Hour, Now: func() time.Time { return now }})
		a, c := newAccount(), newAccount()
		mustCreate(t, s, a)
		mustCreate(t, s, c)
		for _, v := range []string{"a", "b", "c"} {
			if err := s.AddValue(ctx, a.Subdomain, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddValue(ctx, c.Subdomain, "x"); err != nil {
			t.Fatal(err)
		}
		if n, err := s.CountValues(ctx); err != nil || n != 3 {
			t.Fatalf("CountValues = %d, %v; want 3 (two kept of three, plus one)", n, err)
		}
		now = now.Add(2 * time.Hour)
		if n, err := s.CountValues(ctx); err != nil || n != 0 {
			t.Fatalf("after expiry CountValues = %d, %v; want 0", n, err)
		}
	})
}

func TestSubscribe(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := openStore(t, b, Options{ValuesPerAccount: 2})
		var got []SubdomainState
		cancel := s.Subscribe(func(st SubdomainState) { got = append(got, st) })
		a := newAccount()
		steps := []struct {
			name string
			do   func() error
			want SubdomainState
		}{
			{"create", func() error { return s.CreateAccount(ctx, a) }, SubdomainState{}},
			{"add a", func() error { return s.AddValue(ctx, a.Subdomain, "a") }, SubdomainState{Values: []string{"a"}}},
			{"add b", func() error { return s.AddValue(ctx, a.Subdomain, "b") }, SubdomainState{Values: []string{"a", "b"}}},
			{"add c", func() error { return s.AddValue(ctx, a.Subdomain, "c") }, SubdomainState{Values: []string{"b", "c"}}},
			{"remove b", func() error { return s.RemoveValue(ctx, a.Subdomain, "b") }, SubdomainState{Values: []string{"c"}}},
			{"republish", func() error { return s.Republish(ctx, a.Subdomain) }, SubdomainState{Values: []string{"c"}}},
			{"clear", func() error { return s.ClearValues(ctx, a.Subdomain) }, SubdomainState{}},
			{"delete", func() error { return s.DeleteAccount(ctx, a.Username) }, SubdomainState{Deleted: true}},
		}
		var prev int64
		for i, step := range steps {
			if err := step.do(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			// Delivered synchronously: the state is there when the call returns.
			if len(got) != i+1 {
				t.Fatalf("%s: %d states delivered, want %d", step.name, len(got), i+1)
			}
			st := got[i]
			if st.Subdomain != a.Subdomain || !slices.Equal(st.Values, step.want.Values) || st.Deleted != step.want.Deleted {
				t.Errorf("%s: delivered %+v, want %+v", step.name, st, step.want)
			}
			if st.Version <= prev {
				t.Errorf("%s: version %d not above previous %d", step.name, st.Version, prev)
			}
			prev = st.Version
		}
		cancel()
		if err := s.Republish(ctx, a.Subdomain); !errors.Is(err, ErrNotFound) {
			t.Errorf("republish of a deleted account: %v, want ErrNotFound", err)
		}
		mustCreate(t, s, newAccount())
		if len(got) != len(steps) {
			t.Errorf("cancelled subscriber received %d more states", len(got)-len(steps))
		}
	})
}

func TestDurableAcrossReopen(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s, err := Open(ctx, b.driver, b.dsn, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		a := mustCreate(t, s, newAccount())
		for _, v := range []string{"x", "y"} {
			if err := s.AddValue(ctx, a.Subdomain, v); err != nil {
				t.Fatal(err)
			}
		}
		before := loadAll(t, s)[a.Subdomain]
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2 := openStore(t, b, Options{})
		after := loadAll(t, s2)[a.Subdomain]
		if !slices.Equal(after.Values, []string{"x", "y"}) || after.Version != before.Version {
			t.Errorf("after reopen %+v, before %+v", after, before)
		}
		if got, err := s2.AccountByUsername(ctx, a.Username); err != nil || got.Subdomain != a.Subdomain {
			t.Errorf("account after reopen: %+v, %v", got, err)
		}
		// Writes after reopen continue the sequence.
		if err := s2.AddValue(ctx, a.Subdomain, "z"); err != nil {
			t.Fatal(err)
		}
		if st := loadAll(t, s2)[a.Subdomain]; st.Version <= before.Version {
			t.Errorf("version went from %d to %d across reopen", before.Version, st.Version)
		}
	})
}

func TestMigrations(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := openStore(t, b, Options{})
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations()) {
			t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, len(migrations()))
		}
		// Opening again applies nothing.
		openStore(t, b, Options{})
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations()) {
			t.Fatalf("after reopen schema_migrations has %d rows (%v)", n, err)
		}
		// A database from a newer program is refused, not half-used.
		if _, err := s.db.ExecContext(ctx, s.dialect.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`), len(migrations())+1); err != nil {
			t.Fatal(err)
		}
		if s2, err := Open(ctx, b.driver, b.dsn, Options{Logger: quietLogger()}); err == nil {
			s2.Close()
			t.Fatal("opened a database with a newer schema")
		}
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := testCtx(t)
	for _, tc := range []struct{ driver, dsn string }{
		{"mysql", "x"},
		{"sqlite3", ""},
		{"postgres", ""},
	} {
		if s, err := Open(ctx, tc.driver, tc.dsn, Options{Logger: quietLogger()}); err == nil {
			s.Close()
			t.Errorf("Open(%q, %q) succeeded", tc.driver, tc.dsn)
		}
	}
}

func TestRebindDollar(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`a = ? AND b = ?`, `a = $1 AND b = $2`},
		{`VALUES (?, ?, ?)`, `VALUES ($1, $2, $3)`},
	} {
		if got := rebindDollar(tc.in); got != tc.want {
			t.Errorf("rebindDollar(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestExpiryQueriesSearchTheExpiryIndex: the expiry check runs every second
// on every instance, so its queries must search txt_values_by_expiry, not
// walk a table or another index (which SELECT DISTINCT did: 78 ms a second
// at a million values).
func TestExpiryQueriesSearchTheExpiryIndex(t *testing.T) {
	s := openStore(t, newBackend(t, "sqlite"), Options{})
	for _, q := range []string{anyExpiredQuery, expiredSubdomainsQuery} {
		plan := queryPlan(t, s, q, 0)
		if len(plan) != 1 || !strings.HasPrefix(plan[0], "SEARCH txt_values USING ") || !strings.Contains(plan[0], "INDEX txt_values_by_expiry ") {
			t.Errorf("%s\nplan %q, want one SEARCH of txt_values_by_expiry", q, plan)
		}
	}
}

// queryPlan returns SQLite's EXPLAIN QUERY PLAN details for q.
func queryPlan(t *testing.T, s *Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.db.QueryContext(testCtx(t), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// TestLoadQueryPlan: start-up reads every account once. The load used to
// join a grouped subquery on changes that SQLite rescanned for every account
// ("SCAN c" under the accounts loop): 33 s at 20,000 accounts. Each of its
// queries now walks one covering index in order: no table look-up, no
// search per row, no sort.
func TestLoadQueryPlan(t *testing.T) {
	s := openStore(t, newBackend(t, "sqlite"), Options{})
	for _, tc := range []struct {
		query string
		want  string
	}{
		{loadAccountsQuery, "SCAN accounts USING COVERING INDEX sqlite_autoindex_accounts_2"},
		{loadValuesQuery, "SCAN txt_values USING COVERING INDEX txt_values_live"},
	} {
		plan := queryPlan(t, s, tc.query, 0)
		if len(plan) != 1 || plan[0] != tc.want {
			t.Errorf("%s\nplan %q, want %q", tc.query, plan, tc.want)
		}
	}
}

// values reads subdomain's live values (ErrNotFound without an account), as
// the follower does.
func values(ctx context.Context, s *Store, subdomain string) ([]string, error) {
	st, err := s.readState(ctx, s.read, subdomain, s.opts.Now())
	if err != nil {
		return nil, err
	}
	if st.Deleted {
		return nil, ErrNotFound
	}
	return st.Values, nil
}
