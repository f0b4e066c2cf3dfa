package store

import (
	"context"
	"sync"
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

// TestPauseCA: of concurrent pauses (instances meeting one outage) exactly
// one starts the pause; the others extend it at most, never shorten it.
func TestPauseCA(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		clock := newTestClock()
		now := clock.Now()
		stores := []*Store{openStore(t, b, Options{Now: clock.Now}), openStore(t, b, Options{Now: clock.Now})}
		var (
			mu      sync.Mutex
			started int
			wg      sync.WaitGroup
		)
		for k := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				until := now.Add(time.Duration(60+k) * time.Second)
				ok, err := stores[k%2].PauseCA(ctx, CAState{Name: "first", PausedUntil: until, Failures: 1, Kind: "rate_limited", LastError: "429"}, now)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					started++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if started != 1 {
			t.Fatalf("%d pauses started, want 1", started)
		}
		got, err := stores[0].CAStates(ctx)
		if err != nil || len(got) != 1 || !got[0].PausedUntil.Equal(now.Add(67*time.Second)) {
			t.Fatalf("after concurrent pauses: %+v, %v (want the latest end)", got, err)
		}
		// A shorter pause changes nothing; a later one, after the pause
		// ended, starts a new one.
		if ok, err := stores[1].PauseCA(ctx, CAState{Name: "first", PausedUntil: now.Add(time.Second), Failures: 2}, now); ok || err != nil {
			t.Fatalf("shorter pause: %v, %v", ok, err)
		}
		if got, _ := stores[0].CAStates(ctx); !got[0].PausedUntil.Equal(now.Add(67*time.Second)) || got[0].Failures != 1 {
			t.Fatalf("after a shorter pause: %+v", got[0])
		}
		later := now.Add(2 * time.Minute)
		if ok, err := stores[1].PauseCA(ctx, CAState{Name: "first", PausedUntil: later.Add(time.Minute), Failures: 3}, later); !ok || err != nil {
			t.Fatalf("pause after the last ended: %v, %v", ok, err)
		}
	})
}
