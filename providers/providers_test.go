package providers

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/challenge/dns01"

	"github.com/delegated/delegated/httpapi"
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
	p := NewLocal(st, time.Second)
	tests := []struct {
		domain, keyAuth, sub string
	}{
		{"example.com", "tok1.thumb", "sub-example"},
		{"*.example.com", "tok2.thumb", "sub-example"},
		{"WWW.Example.com.", "tok3.thumb", "sub-www"},
	}
	for _, tc := range tests {
		if err := p.Present(tc.domain, "", tc.keyAuth); err != nil {
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
		if err := p.CleanUp(tc.domain, "", tc.keyAuth); err != nil {
			t.Fatalf("CleanUp(%s): %v", tc.domain, err)
		}
	}
	for _, sub := range []string{"sub-example", "sub-www"} {
		if got, _ := storetest.Values(ctx, st, sub); len(got) != 0 {
			t.Errorf("%s still holds %v after CleanUp", sub, got)
		}
	}
	if err := p.Present("unassigned.example.org", "", "k"); err == nil || !strings.Contains(err.Error(), "no challenge subdomain assigned to unassigned.example.org") {
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

// startAPI runs the real delegated API on a temp SQLite store.
func startAPI(t *testing.T) (*store.Store, string) {
	t.Helper()
	st := openStore(t)
	api, err := httpapi.New(httpapi.Options{Zone: "auth.example.org", Listen: []string{"127.0.0.1:0"}}, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		api.Shutdown(ctx)
	})
	return st, "http://" + api.Addrs()[0]
}

func register(t *testing.T, base string) RemoteAccount {
	t.Helper()
	resp, err := http.Post(base+"/register", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a RemoteAccount
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestACMEDNSAgainstDelegatedAPI(t *testing.T) {
	ctx := context.Background()
	st, base := startAPI(t)
	acct := register(t, base)
	view := watch(st)
	p, err := NewACMEDNS(ACMEDNSOptions{ServerURL: base + "/", Accounts: map[string]RemoteAccount{"Example.com": acct}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"example.com", "*.example.com"} {
		if err := p.Present(d, "", "token."+d); err != nil {
			t.Fatalf("Present(%s): %v", d, err)
		}
		want := dns01.GetChallengeInfo(d, "token."+d).Value
		if !slices.Contains(view.get(acct.Subdomain), want) {
			t.Errorf("after Present(%s) the server's store has %v", d, view.get(acct.Subdomain))
		}
	}
	if got, _ := storetest.Values(ctx, st, acct.Subdomain); len(got) != 2 {
		t.Errorf("values %v, want 2", got)
	}

	tests := []struct {
		name    string
		opts    ACMEDNSOptions
		domain  string
		wantErr string
	}{
		{"no account for the name", ACMEDNSOptions{ServerURL: base, Accounts: map[string]RemoteAccount{"example.com": acct}}, "other.org", "no account for other.org"},
		{"wrong key", ACMEDNSOptions{ServerURL: base, Accounts: map[string]RemoteAccount{"example.com": {Username: acct.Username, Password: strings.Repeat("x", 40), Subdomain: acct.Subdomain}}}, "example.com", "401"},
		{"server down", ACMEDNSOptions{ServerURL: "http://" + closedAddr(t), Accounts: map[string]RemoteAccount{"example.com": acct}, Timeout: 2 * time.Second}, "example.com", "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewACMEDNS(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Present(tc.domain, "", "k")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := NewACMEDNS(ACMEDNSOptions{ServerURL: base, Accounts: map[string]RemoteAccount{"x.org": {Username: "u"}}}); err == nil {
		t.Error("an account without password and subdomain was accepted")
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
