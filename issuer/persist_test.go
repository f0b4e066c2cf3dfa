package issuer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/store"
)

// The persist record has a subdomain of its own per base name (apex and
// wildcard share it, dns-01's is another), loses policy=wildcard when the
// last wildcard certificate goes, and is removed with the last certificate
// that needs it.
func TestPersistRecordLifecycle(t *testing.T) {
	ctx := context.Background()
	iss, st := newTestIssuer(t, &fakeClock{now: time.Now()})
	dels, err := iss.assignFor(ctx, []string{"example.com", "*.example.com"}, ChallengeDNSPersist01, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(dels) != 1 || dels[0].Name != "_validation-persist.example.com." || !strings.HasSuffix(dels[0].Target, ".auth.example.org.") {
		t.Fatalf("delegations %+v", dels)
	}
	dns01, err := iss.assignFor(ctx, []string{"example.com"}, ChallengeDNS01, "")
	if err != nil {
		t.Fatal(err)
	}
	if dns01[0].Target == dels[0].Target {
		t.Fatalf("dns-01 and dns-persist-01 share %s", dels[0].Target)
	}
	sub := strings.TrimSuffix(dels[0].Target, ".auth.example.org.")
	const account = "https://ca.example/acct/1"
	if err := st.SetPersistentValue(ctx, sub, PersistValue("ca.example", account, true)); err != nil {
		t.Fatal(err)
	}
	save := func(name string, domains ...string) {
		t.Helper()
		if err := st.SaveCertificate(ctx, store.Certificate{Name: name, Domains: domains, Status: string(StatusActive), Challenge: ChallengeDNSPersist01}); err != nil {
			t.Fatal(err)
		}
	}
	save("wild", "example.com", "*.example.com")
	save("apex", "example.com")
	if w, err := iss.persistWildcard(ctx, "example.com", []string{"example.com"}); err != nil || !w {
		t.Errorf("persistWildcard with a stored wildcard certificate = %v, %v", w, err)
	}

	// The wildcard certificate goes: the record stays, narrowed.
	if err := st.DeleteCertificate(ctx, "wild"); err != nil {
		t.Fatal(err)
	}
	if err := iss.syncPersist(ctx, []string{"example.com", "*.example.com"}); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Values(ctx, sub); err != nil || !slices.Equal(got, []string{PersistValue("ca.example", account, false)}) {
		t.Fatalf("after the wildcard certificate went: %q, %v", got, err)
	}

	// The last one goes: subdomain and record with it.
	if err := st.DeleteCertificate(ctx, "apex"); err != nil {
		t.Fatal(err)
	}
	if err := iss.syncPersist(ctx, []string{"example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Values(ctx, sub); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the last certificate went: %v, want the subdomain gone", err)
	}
	if _, err := st.ChallengeNameByBase(ctx, persistKey("example.com")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("persist mapping kept: %v", err)
	}
	if _, err := st.ChallengeNameByBase(ctx, "example.com"); err != nil {
		t.Errorf("dns-01 mapping lost: %v", err)
	}
}

// The zone's own name is answered by the zone itself, for dns-01 only.
func TestOwnZoneOnlyDNS01(t *testing.T) {
	iss, _ := newTestIssuer(t, &fakeClock{now: time.Now()})
	for _, m := range []string{ChallengeDNSAccount01, ChallengeDNSPersist01} {
		_, err := iss.assignFor(context.Background(), []string{"auth.example.org"}, m, "")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "validates with dns-01 only") {
			t.Errorf("%s: %v", m, err)
		}
	}
}
