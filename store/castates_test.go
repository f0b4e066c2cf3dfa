package store

import (
	"context"
	"testing"
	"time"
)

func TestCAStates(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		// A second store on the same database stands for another instance.
		other := openStore(t, b, Options{Now: clock.Now})
		if st, err := s.CAStates(ctx); err != nil || len(st) != 0 {
			t.Fatalf("fresh store: %v, %v", st, err)
		}
		until := clock.Now().Add(90 * time.Second).Truncate(time.Millisecond)
		if err := s.SaveCAState(ctx, CAState{Name: "first", PausedUntil: until, Failures: 1, Kind: "rate_limited", LastError: "429"}); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCAState(ctx, CAState{Name: "second", Failures: 0}); err != nil {
			t.Fatal(err)
		}
		got, err := other.CAStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Name != "first" || !got[0].PausedUntil.Equal(until) || got[0].Failures != 1 ||
			got[0].Kind != "rate_limited" || got[0].LastError != "429" || got[0].UpdatedAt.IsZero() ||
			got[1].Name != "second" || !got[1].PausedUntil.IsZero() {
			t.Fatalf("another instance reads %+v", got)
		}
		// A success clears the pause.
		if err := other.SaveCAState(ctx, CAState{Name: "first"}); err != nil {
			t.Fatal(err)
		}
		got, err = s.CAStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !got[0].PausedUntil.IsZero() || got[0].Failures != 0 || got[0].Kind != "" {
			t.Fatalf("after reset: %+v", got[0])
		}
	})
}

func TestCertificateCAs(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := openStore(t, b, Options{})
		c := Certificate{Name: "a.example", Domains: []string{"a.example"}, Status: "active", CA: "second", CAPin: "second", OrderCA: "first"}
		if err := s.SaveCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := s.CertificateByName(ctx, "a.example")
		if err != nil {
			t.Fatal(err)
		}
		if got.CA != "second" || got.CAPin != "second" || got.OrderCA != "first" {
			t.Fatalf("round trip: CA %q pin %q order %q", got.CA, got.CAPin, got.OrderCA)
		}
	})
}
