package store

import (
	"errors"
	"testing"
	"time"
)

func TestLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		const name, ttl = "certificate/example", 10 * time.Second

		tokA, err := s.AcquireLease(ctx, name, "a", ttl)
		if err != nil || tokA <= 0 {
			t.Fatalf("first acquire: %d, %v", tokA, err)
		}
		if _, err := s.AcquireLease(ctx, name, "b", ttl); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("acquire while held: %v, want ErrLeaseHeld", err)
		}
		// Other names are independent.
		if _, err := s.AcquireLease(ctx, "certificate/other", "b", ttl); err != nil {
			t.Fatalf("acquire another name: %v", err)
		}
		clock.Advance(8 * time.Second)
		if err := s.RenewLease(ctx, name, "a", tokA, ttl); err != nil {
			t.Fatalf("renew: %v", err)
		}
		clock.Advance(8 * time.Second) // 16s after acquiring, 8s after renewing: still held.
		if _, err := s.AcquireLease(ctx, name, "b", ttl); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("acquire after renewal: %v, want ErrLeaseHeld", err)
		}
		for _, tc := range []struct {
			name   string
			holder string
			token  int64
		}{{"wrong holder", "b", tokA}, {"wrong token", "a", tokA + 1}} {
			if err := s.RenewLease(ctx, name, tc.holder, tc.token, ttl); !errors.Is(err, ErrLeaseLost) {
				t.Errorf("renew with %s: %v, want ErrLeaseLost", tc.name, err)
			}
		}

		// The holder dies: the lease expires and is taken over with a
		// larger token; the old holder cannot renew.
		clock.Advance(ttl)
		tokB, err := s.AcquireLease(ctx, name, "b", ttl)
		if err != nil || tokB <= tokA {
			t.Fatalf("take over expired lease: token %d (old %d), %v", tokB, tokA, err)
		}
		if err := s.RenewLease(ctx, name, "a", tokA, ttl); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("old holder renew: %v, want ErrLeaseLost", err)
		}
		// Releasing with a stale token changes nothing.
		if err := s.ReleaseLease(ctx, name, "a", tokA); err != nil {
			t.Fatalf("stale release: %v", err)
		}
		if _, err := s.AcquireLease(ctx, name, "a", ttl); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("acquire after stale release: %v, want ErrLeaseHeld", err)
		}
		// Release frees it at once, and tokens keep growing.
		if err := s.ReleaseLease(ctx, name, "b", tokB); err != nil {
			t.Fatal(err)
		}
		if err := s.RenewLease(ctx, name, "b", tokB, ttl); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("renew after release: %v, want ErrLeaseLost", err)
		}
		tokA2, err := s.AcquireLease(ctx, name, "a", ttl)
		if err != nil || tokA2 <= tokB {
			t.Fatalf("acquire after release: token %d (previous %d), %v", tokA2, tokB, err)
		}
		// Re-acquiring one's own live lease is a new acquisition.
		tokA3, err := s.AcquireLease(ctx, name, "a", ttl)
		if err != nil || tokA3 <= tokA2 {
			t.Fatalf("re-acquire own lease: token %d (previous %d), %v", tokA3, tokA2, err)
		}
		for _, tc := range []struct {
			name, lease, holder string
			ttl                 time.Duration
		}{{"empty name", "", "a", ttl}, {"empty holder", name, "", ttl}, {"zero ttl", name, "a", 0}} {
			if _, err := s.AcquireLease(ctx, tc.lease, tc.holder, tc.ttl); err == nil {
				t.Errorf("acquire with %s succeeded", tc.name)
			}
		}
	})
}

// TestLeaseContention races instances for one lease: exactly one wins each
// round, and the winners' tokens strictly increase.
func TestLeaseContention(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		const instances, rounds = 4, 5
		stores := make([]*Store, instances)
		for i := range stores {
			stores[i] = openStore(t, b, Options{})
		}
		var last int64
		for round := range rounds {
			type result struct {
				token int64
				err   error
			}
			results := make(chan result, instances)
			for i, s := range stores {
				go func() {
					tok, err := s.AcquireLease(ctx, "leader", string(rune('a'+i)), time.Minute)
					results <- result{tok, err}
				}()
			}
			var winners []int64
			for range instances {
				r := <-results
				switch {
				case r.err == nil:
					winners = append(winners, r.token)
				case !errors.Is(r.err, ErrLeaseHeld):
					t.Fatalf("round %d: %v", round, r.err)
				}
			}
			if len(winners) != 1 || winners[0] <= last {
				t.Fatalf("round %d: winners' tokens %v (previous %d), want exactly one, larger", round, winners, last)
			}
			last = winners[0]
			// Find the holder and release for the next round.
			var holder string
			if err := stores[0].db.QueryRowContext(ctx, stores[0].dialect.rebind(`SELECT holder FROM leases WHERE name = ?`), "leader").Scan(&holder); err != nil {
				t.Fatal(err)
			}
			if err := stores[0].ReleaseLease(ctx, "leader", holder, last); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestSaveCertificateFenced: a fenced save writes only while its holder
// still holds the lease with its token, checked in the write's own
// transaction, and extends the lease; otherwise nothing is written.
func TestSaveCertificateFenced(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		const lease, ttl = "cert:example", 10 * time.Second
		tokA, err := s.AcquireLease(ctx, lease, "a", ttl)
		if err != nil {
			t.Fatal(err)
		}
		cert := func(status string) Certificate {
			return Certificate{Name: "example", Domains: []string{"example.com"}, Status: status}
		}
		statusNow := func() string {
			t.Helper()
			c, err := s.CertificateByName(ctx, "example")
			if err != nil {
				t.Fatal(err)
			}
			return c.Status
		}
		fence := Fence{Lease: lease, Holder: "a", Token: tokA, TTL: ttl}

		clock.Advance(8 * time.Second)
		if err := s.SaveCertificateFenced(ctx, cert("processing"), fence); err != nil {
			t.Fatalf("save while holding: %v", err)
		}
		// The save extended the lease: 16 s after acquiring, it still holds.
		clock.Advance(8 * time.Second)
		if _, err := s.AcquireLease(ctx, lease, "b", ttl); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("acquire after a fenced save: %v, want ErrLeaseHeld", err)
		}

		for _, tc := range []struct {
			name  string
			fence Fence
		}{
			{"wrong holder", Fence{Lease: lease, Holder: "b", Token: tokA, TTL: ttl}},
			{"wrong token", Fence{Lease: lease, Holder: "a", Token: tokA + 1, TTL: ttl}},
			{"unknown lease", Fence{Lease: "cert:other", Holder: "a", Token: tokA, TTL: ttl}},
		} {
			if err := s.SaveCertificateFenced(ctx, cert("failed"), tc.fence); !errors.Is(err, ErrLeaseLost) {
				t.Errorf("%s: %v, want ErrLeaseLost", tc.name, err)
			}
			if got := statusNow(); got != "processing" {
				t.Fatalf("%s: status %q written", tc.name, got)
			}
		}

		// Expired, then taken over: the old holder's write is refused.
		clock.Advance(ttl)
		if err := s.SaveCertificateFenced(ctx, cert("failed"), fence); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("save after expiry: %v, want ErrLeaseLost", err)
		}
		tokB, err := s.AcquireLease(ctx, lease, "b", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCertificateFenced(ctx, cert("active"), Fence{Lease: lease, Holder: "b", Token: tokB, TTL: ttl}); err != nil {
			t.Fatalf("new holder's save: %v", err)
		}
		if err := s.SaveCertificateFenced(ctx, cert("failed"), fence); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("old holder's save after takeover: %v, want ErrLeaseLost", err)
		}
		if got := statusNow(); got != "active" {
			t.Fatalf("status %q, want the new holder's active", got)
		}
	})
}
