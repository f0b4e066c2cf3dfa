package issuer

import (
	"context"
	"testing"
	"time"

	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store/storetest"
)

// TestSelfDelegation: the zone's own name (and its wildcard) validates
// through _acme-challenge.<zone>, a label of our zone: no CNAME to check,
// and the DNS-01 value lands on the account whose subdomain is that label.
func TestSelfDelegation(t *testing.T) {
	ctx := context.Background()
	iss, st := newTestIssuer(t, &fakeClock{now: time.Now()})
	dels, err := iss.assign(ctx, []string{"auth.example.org", "*.auth.example.org", "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dels) != 2 {
		t.Fatalf("delegations %+v, want the zone's own and example.com's", dels)
	}
	self := dels[0]
	if self.Name != "_acme-challenge.auth.example.org." || !selfAnswered(self) || !self.OK {
		t.Fatalf("own name: %+v, want _acme-challenge.auth.example.org. answered by ourselves", self)
	}
	if selfAnswered(dels[1]) {
		t.Fatalf("customer name treated as self-answered: %+v", dels[1])
	}
	if _, err := storetest.Values(ctx, st, selfLabel); err != nil {
		t.Fatalf("no account for %s: %v", selfLabel, err)
	}

	// The check leaves it in place without asking any resolver (the
	// configured one, 127.0.0.1:1, answers nothing).
	only := []Delegation{self}
	iss.checkDelegations(ctx, only)
	if !only[0].OK || only[0].Problem != "" {
		t.Fatalf("after the check: %+v", only[0])
	}
	if err := delegationError(only); err != nil {
		t.Fatalf("delegation error for the zone's own name: %v", err)
	}

	again, err := iss.assign(ctx, []string{"auth.example.org"})
	if err != nil || len(again) != 1 || again[0] != self {
		t.Fatalf("second assignment %+v, %v; want %+v", again, err, self)
	}

	// The solver writes the value where the DNS server serves it.
	if err := providers.NewLocal(st).PresentContext(ctx, "auth.example.org", "token.key"); err != nil {
		t.Fatal(err)
	}
	vals, err := storetest.Values(ctx, st, selfLabel)
	if err != nil || len(vals) != 1 {
		t.Fatalf("values of %s: %v, %v; want one", selfLabel, vals, err)
	}
}

// TestSelfDelegationKeepsEarlierSubdomain: a challenge subdomain assigned to
// the zone's name before (reachable only through a static CNAME in the
// zone) is kept and checked like any delegation, not silently replaced.
func TestSelfDelegationKeepsEarlierSubdomain(t *testing.T) {
	ctx := context.Background()
	iss, _ := newTestIssuer(t, &fakeClock{now: time.Now()})
	n, err := iss.createChallengeName(ctx, "auth.example.org")
	if err != nil {
		t.Fatal(err)
	}
	dels, err := iss.assign(ctx, []string{"auth.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	want := Delegation{BaseName: "auth.example.org", Name: "_acme-challenge.auth.example.org.", Target: n.Subdomain + ".auth.example.org."}
	if len(dels) != 1 || dels[0] != want || selfAnswered(dels[0]) {
		t.Fatalf("delegations %+v, want %+v", dels, want)
	}
}
