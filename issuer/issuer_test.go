package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
	"github.com/delegated/delegated/store/storetest"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		want    []string
		wantErr string
	}{
		{"apex wildcard www", Request{Name: "ex", Domains: []string{"Example.COM.", "*.example.com", "www.example.com"}}, []string{"example.com", "*.example.com", "www.example.com"}, ""},
		{"duplicates dropped", Request{Name: "ex", Domains: []string{"a.example", "A.example", "a.example."}}, []string{"a.example"}, ""},
		{"no domains", Request{Name: "ex"}, nil, "no domains"},
		{"no name", Request{Domains: []string{"a.example"}}, nil, "certificate name"},
		{"name with slash", Request{Name: "../etc", Domains: []string{"a.example"}}, nil, "certificate name"},
		{"dot name", Request{Name: ".hidden", Domains: []string{"a.example"}}, nil, "certificate name"},
		{"inner wildcard", Request{Name: "ex", Domains: []string{"a.*.example"}}, nil, "not a domain name"},
		{"double wildcard", Request{Name: "ex", Domains: []string{"*.*.example"}}, nil, "not a domain name"},
		{"single label", Request{Name: "ex", Domains: []string{"localhost"}}, nil, "not a domain name"},
		{"bare wildcard", Request{Name: "ex", Domains: []string{"*"}}, nil, "not a domain name"},
		{"space inside", Request{Name: "ex", Domains: []string{"a b.example"}}, nil, "not a domain name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := normalize(tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %v, %v; want ErrInvalid containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// FuzzNormalize: operator input never panics, and what is accepted is
// lower case, unique, and has a wildcard only as its first label.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com", "A.B.", "*.*.x", "..", "\x00.com", "a..b"} {
		f.Add("name", s)
	}
	f.Fuzz(func(t *testing.T, name, domain string) {
		n, ds, err := normalize(Request{Name: name, Domains: []string{domain, strings.ToUpper(domain)}})
		if err != nil {
			return
		}
		if strings.ContainsAny(n, "/\\") || len(ds) != 1 {
			t.Fatalf("accepted %q %v", n, ds)
		}
		d := ds[0]
		if d != strings.ToLower(d) || strings.Contains(strings.TrimPrefix(d, "*."), "*") || strings.HasSuffix(d, ".") {
			t.Fatalf("accepted %q", d)
		}
	})
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{1, 15 * time.Minute}, {2, 30 * time.Minute}, {3, time.Hour}, {5, 4 * time.Hour}, {8, 24 * time.Hour}, {50, 24 * time.Hour},
	} {
		if got := RetryDelay(15*time.Minute, tc.n); got != tc.want {
			t.Errorf("RetryDelay(15m, %d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestIssuer(t *testing.T, clock *fakeClock) (*Issuer, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite3", filepath.Join(t.TempDir(), "d.db"), store.Options{Now: clock.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	iss, err := New(Options{
		Zone: "auth.example.org", Directory: "https://127.0.0.1:1/dir", Resolvers: []string{"127.0.0.1:1"},
		DeployDir: t.TempDir(), Now: clock.Now, Logger: quiet(),
	}, st, providers.NewLocal(st))
	if err != nil {
		t.Fatal(err)
	}
	return iss, st
}

// TestFailureBackoff: failed attempts are spaced 15m, 30m, 1h, 2h, then the
// status is failed. A first issuance then waits for the operator; a renewal
// keeps trying ever more rarely (4h, 8h, …) while its current material,
// never touched, keeps serving.
func TestFailureBackoff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		certPEM   string
		wantAfter time.Duration // next attempt after the last failure; 0: none
	}{
		{"first issuance", "", 0},
		{"renewal", "CURRENT", 4 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			iss, st := newTestIssuer(t, clock)
			c := store.Certificate{Name: "ex", Domains: []string{"example.com"}, Status: string(StatusProcessing), CertPEM: tc.certPEM, KeyPEM: "KEY"}
			if err := st.SaveCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
			wantGaps := []time.Duration{15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}
			for n := 1; n <= 5; n++ {
				c, _ = st.CertificateByName(ctx, "ex")
				if !iss.claim("ex") {
					t.Fatal("claim")
				}
				iss.fail(ctx, &c, errors.New("CA unreachable"))
				iss.release("ex")
				got, err := st.CertificateByName(ctx, "ex")
				if err != nil {
					t.Fatal(err)
				}
				if got.CertPEM != tc.certPEM || got.KeyPEM != "KEY" {
					t.Fatalf("attempt %d replaced the current material", n)
				}
				if got.Attempts != n || got.LastError != "CA unreachable" {
					t.Fatalf("attempt %d: attempts %d, last error %q", n, got.Attempts, got.LastError)
				}
				if n < 5 {
					if Status(got.Status) != StatusProcessing {
						t.Fatalf("attempt %d: status %q, want processing", n, got.Status)
					}
					if gap := got.NextAttempt.Sub(clock.Now()); gap != wantGaps[n-1] {
						t.Fatalf("attempt %d: next attempt in %v, want %v", n, gap, wantGaps[n-1])
					}
					clock.Advance(wantGaps[n-1])
					continue
				}
				if Status(got.Status) != StatusFailed {
					t.Fatalf("after the last attempt: status %q, want failed", got.Status)
				}
				var after time.Duration
				if !got.NextAttempt.IsZero() {
					after = got.NextAttempt.Sub(clock.Now())
				}
				if after != tc.wantAfter {
					t.Fatalf("after the last attempt: next attempt in %v, want %v", after, tc.wantAfter)
				}
			}
		})
	}
}

// TestAssignSharesBaseName: apex and wildcard share one challenge subdomain,
// which exists as an account (so the zone serves the name), and a second
// request reuses the mapping.
func TestAssignSharesBaseName(t *testing.T) {
	ctx := context.Background()
	iss, st := newTestIssuer(t, &fakeClock{now: time.Now()})
	dels, err := iss.assign(ctx, []string{"example.com", "*.example.com", "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dels) != 2 || dels[0].Name != "_acme-challenge.example.com." || dels[1].Name != "_acme-challenge.www.example.com." {
		t.Fatalf("delegations %+v", dels)
	}
	for _, d := range dels {
		sub := strings.TrimSuffix(d.Target, ".auth.example.org.")
		if _, err := storetest.Values(ctx, st, sub); err != nil {
			t.Errorf("%s: target %s has no account: %v", d.Name, d.Target, err)
		}
		if d.Record() != d.Name+" CNAME "+d.Target {
			t.Errorf("record %q", d.Record())
		}
	}
	again, err := iss.assign(ctx, []string{"*.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Target != dels[0].Target {
		t.Errorf("second assignment %s, want the first %s", again[0].Target, dels[0].Target)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestLifetimePlan: without ARI a certificate renews when a third of its
// lifetime remains (minus up to 1% jitter); renew_before is a floor.
func TestLifetimePlan(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	certPEM := selfSigned(t, now, now.Add(90*24*time.Hour))
	for _, tc := range []struct {
		name        string
		renewBefore time.Duration
		earliest    time.Time
		latest      time.Time
		wantSource  string
	}{
		{"third of the lifetime", 0, now.Add(60*24*time.Hour - 90*24*time.Hour/100), now.Add(60 * 24 * time.Hour), "lifetime"},
		{"renew_before earlier", 45 * 24 * time.Hour, now.Add(45 * 24 * time.Hour), now.Add(45 * 24 * time.Hour), "renew_before"},
		{"renew_before later has no effect", 10 * 24 * time.Hour, now.Add(60*24*time.Hour - 90*24*time.Hour/100), now.Add(60 * 24 * time.Hour), "lifetime"},
		{"past moment becomes now", 100 * 24 * time.Hour, now, now, "renew_before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{now: now}
			iss, _ := newTestIssuer(t, clock)
			iss.opts.RenewBefore = tc.renewBefore
			seen := map[time.Time]bool{}
			for range 20 {
				plan, err := iss.planByLifetime(store.Certificate{CertPEM: certPEM})
				if err != nil {
					t.Fatal(err)
				}
				if plan.at.Before(tc.earliest) || plan.at.After(tc.latest) || plan.source != tc.wantSource {
					t.Fatalf("plan %v (%s), want %s between %v and %v", plan.at, plan.source, tc.wantSource, tc.earliest, tc.latest)
				}
				seen[plan.at] = true
			}
			if tc.earliest != tc.latest && len(seen) < 2 {
				t.Errorf("20 plans chose one moment: no jitter")
			}
		})
	}
}

func selfSigned(t *testing.T, notBefore, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notBefore, NotAfter: notAfter, DNSNames: []string{"example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
