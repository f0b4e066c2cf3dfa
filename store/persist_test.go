package store

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// A persistent value outlives the value lifetime, replaces whatever the
// subdomain held, is what subscribers and Load see, and goes with the
// account.
func TestPersistentValue(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now, ValueLifetime: time.Hour})
		a := mustCreate(t, s, newAccount())
		if err := s.AddValue(ctx, a.Subdomain, "per-order"); err != nil {
			t.Fatal(err)
		}
		rec := record(s)
		const v = "ca.example; accounturi=https://ca.example/acct/1; policy=wildcard"
		if err := s.SetPersistentValue(ctx, a.Subdomain, v); err != nil {
			t.Fatal(err)
		}
		if got := rec.all(); len(got) != 1 || !slices.Equal(got[0].Values, []string{v}) {
			t.Fatalf("published %+v, want the persistent value alone", got)
		}
		// Setting it again changes nothing a reader sees.
		if err := s.SetPersistentValue(ctx, a.Subdomain, v); err != nil {
			t.Fatal(err)
		}
		clock.Advance(10 * 365 * 24 * time.Hour)
		if err := s.ExpireValues(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Values(ctx, a.Subdomain); err != nil || !slices.Equal(got, []string{v}) {
			t.Fatalf("after ten years Values = %q, %v; want %q", got, err, v)
		}
		if st := loadAll(t, s)[a.Subdomain]; !slices.Equal(st.Values, []string{v}) {
			t.Errorf("Load: %+v", st)
		}
		// A new value replaces the old one.
		const narrowed = "ca.example; accounturi=https://ca.example/acct/1"
		if err := s.SetPersistentValue(ctx, a.Subdomain, narrowed); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Values(ctx, a.Subdomain); !slices.Equal(got, []string{narrowed}) {
			t.Errorf("after replacing: %q", got)
		}
		if err := s.DeleteAccount(ctx, a.Username); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPersistentValue(ctx, a.Subdomain, v); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown subdomain: %v, want ErrNotFound", err)
		}
	})
}
