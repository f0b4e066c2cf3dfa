package providers

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-acme/lego/v4/challenge/dns01"

	"github.com/delegated/delegated/store"
	"github.com/delegated/delegated/store/storetest"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite3", filepath.Join(t.TempDir(), "d.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// seen records what subscribers (the DNS view among them) were told.
type seen struct {
	mu     sync.Mutex
	values map[string][]string
}

func watch(st *store.Store) *seen {
	s := &seen{values: map[string][]string{}}
	st.Subscribe(func(state store.SubdomainState) {
		s.mu.Lock()
		s.values[state.Subdomain] = state.Values
		s.mu.Unlock()
	})
	return s
}

func (s *seen) get(sub string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[sub]
}

func TestLocalPresentAndCleanUp(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for _, a := range []store.Account{
		{Username: "u1", KeyHash: "x", Subdomain: "sub-example"},
		{Username: "u2", KeyHash: "x", Subdomain: "sub-www"},
	} {
		if err := st.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for base, sub := range map[string]string{"example.com": "sub-example", "www.example.com": "sub-www"} {
		if err := st.AddChallengeName(ctx, store.ChallengeName{BaseName: base, Subdomain: sub, Username: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	view := watch(st)
	p := NewLocal(st)
	tests := []struct {
		domain, keyAuth, sub string
	}{
		{"example.com", "tok1.thumb", "sub-example"},
		{"*.example.com", "tok2.thumb", "sub-example"},
		{"WWW.Example.com.", "tok3.thumb", "sub-www"},
	}
	for _, tc := range tests {
		if err := p.PresentContext(ctx, tc.domain, tc.keyAuth); err != nil {
			t.Fatalf("Present(%s): %v", tc.domain, err)
		}
		want := dns01.GetChallengeInfo(tc.domain, tc.keyAuth).Value
		// Served (pushed to subscribers) before Present returned.
		if !slices.Contains(view.get(tc.sub), want) {
			t.Errorf("after Present(%s): subscribers saw %v, want %q among them", tc.domain, view.get(tc.sub), want)
		}
	}
	// apex and wildcard share a subdomain: both values live together.
	if got := view.get("sub-example"); len(got) != 2 {
		t.Errorf("sub-example values %v, want both apex and wildcard", got)
	}
	for _, tc := range tests {
		if err := p.CleanUpContext(ctx, tc.domain, tc.keyAuth); err != nil {
			t.Fatalf("CleanUp(%s): %v", tc.domain, err)
		}
	}
	for _, sub := range []string{"sub-example", "sub-www"} {
		if got, _ := storetest.Values(ctx, st, sub); len(got) != 0 {
			t.Errorf("%s still holds %v after CleanUp", sub, got)
		}
	}
	if err := p.PresentContext(ctx, "unassigned.example.org", "k"); err == nil || !strings.Contains(err.Error(), "no challenge subdomain assigned to unassigned.example.org") {
		t.Errorf("unassigned name: got %v", err)
	}
}

func TestBaseName(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com", "*.example.com": "example.com", "*.Example.COM.": "example.com",
		"a.b.example.com": "a.b.example.com",
	} {
		if got := BaseName(in); got != want {
			t.Errorf("BaseName(%q) = %q, want %q", in, got, want)
		}
	}
}
