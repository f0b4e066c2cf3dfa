package issuer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/operator"
	"github.com/delegated/delegated/store"
)

// TestNextInfoAt: the CA's Retry-After is followed within a minute and a
// day, and never later than a tenth of the remaining lifetime.
func TestNextInfoAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		retryAfter time.Duration
		left       time.Duration
		want       time.Duration
	}{
		{"no retry-after: a day", 0, 90 * 24 * time.Hour, 24 * time.Hour},
		{"retry-after honoured", 6 * time.Hour, 90 * 24 * time.Hour, 6 * time.Hour},
		{"too short: a minute", time.Second, 90 * 24 * time.Hour, time.Minute},
		{"too long: a day", 30 * 24 * time.Hour, 90 * 24 * time.Hour, 24 * time.Hour},
		{"6-day certificate: a tenth of what is left", 24 * time.Hour, 6 * 24 * time.Hour, 6 * 24 * time.Hour / 10},
		{"nearly expired: not a busy loop", time.Hour, time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextInfoAt(now, tc.retryAfter, now.Add(tc.left)).Sub(now); got != tc.want {
				t.Errorf("next ask in %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRecheckDelay: unanswered checks back off from the re-check interval,
// doubling, to an hour, with ±10% jitter.
func TestRecheckDelay(t *testing.T) {
	i := &Issuer{opts: Options{DelegationRecheck: 30 * time.Second}}
	for _, tc := range []struct {
		failures int
		base     time.Duration
	}{{0, 30 * time.Second}, {1, time.Minute}, {3, 4 * time.Minute}, {7, 64 * time.Minute}, {50, time.Hour}} {
		for range 20 {
			d := i.recheckDelay(tc.failures)
			base := min(tc.base, time.Hour)
			if d < base-base/10 || d > base+base/10 {
				t.Fatalf("%d failures: %v, want %v ±10%%", tc.failures, d, base)
			}
		}
	}
}

// TestPacer: a burst, then one attempt per interval; a refunded token is
// granted again at once. (A CA's rate limit pauses that CA, not the pacer:
// TestFallback, TestCAPauseShared.)
func TestPacer(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newPacer(3600, 2, clock.Now) // one a second, burst 2
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for k := range 2 {
		if err := p.wait(ctx); err != nil {
			t.Fatalf("attempt %d of the burst: %v, want at once", k+1, err)
		}
	}
	if err := p.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third attempt in the same instant: %v, want to wait", err)
	}
	clock.Advance(time.Second)
	if err := p.wait(context.Background()); err != nil {
		t.Fatalf("after an interval: %v", err)
	}
	// A token taken for an attempt that did not happen comes back.
	p.refund()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := p.wait(ctx2); err != nil {
		t.Fatalf("after a refund: %v, want the token at once", err)
	}
}

// TestIssueBatch: every bad line is named and nothing is created; a good
// batch creates certificates due for a check at once; a re-run changes
// nothing; a changed domain list is recorded.
func TestIssueBatch(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	iss, st := newTestIssuer(t, clock)
	bad := []Request{
		{Name: "a", Domains: []string{"a.example.com"}},
		{Name: "b", Domains: []string{"not a domain"}},
		{Name: "a", Domains: []string{"other.example.com"}},
		{Name: "../x", Domains: []string{"x.example.com"}},
	}
	_, err := iss.IssueBatch(ctx, bad, []int{2, 3, 5, 9})
	var be *operator.BatchError
	if !errors.As(err, &be) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad batch: %v, want a BatchError", err)
	}
	var lines []int
	for _, p := range be.Problems {
		lines = append(lines, p.Line)
	}
	if len(lines) != 3 || lines[0] != 3 || lines[1] != 5 || lines[2] != 9 || !strings.Contains(be.Problems[1].Error, "also on line 2") {
		t.Errorf("problems %+v, want lines 3, 5, 9", be.Problems)
	}
	if certs, _ := st.CertificateSummaries(ctx, store.CertificateFilter{}); len(certs) != 0 {
		t.Fatalf("a refused batch created %d certificates", len(certs))
	}
	good := []Request{
		{Name: "a", Domains: []string{"a.example.com", "*.a.example.com"}},
		{Name: "b", Domains: []string{"b.example.com"}},
		{Name: "ab", Domains: []string{"A.example.com.", "b.example.com"}},
	}
	res, err := iss.IssueBatch(ctx, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 3 || res.Changed != 0 || res.Unchanged != 0 || len(res.Certificates) != 3 {
		t.Fatalf("first run: %+v", res)
	}
	// Two base names in all: a's apex and wildcard share one, ab reuses both.
	target := map[string]string{}
	for _, c := range res.Certificates {
		for _, d := range c.Delegations {
			if prev, ok := target[d.Name]; ok && prev != d.Target {
				t.Errorf("%s points at %s and %s", d.Name, prev, d.Target)
			}
			target[d.Name] = d.Target
		}
	}
	if len(target) != 2 {
		t.Errorf("%d records, want 2: %v", len(target), target)
	}
	due, err := st.DueCertificates(ctx, clock.Now(), string(StatusPendingDelegation), 10)
	if err != nil || len(due) != 3 {
		t.Errorf("%d certificates due for a check, want 3 (%v)", len(due), err)
	}
	again, err := iss.IssueBatch(ctx, good, nil)
	if err != nil || again.Created != 0 || again.Changed != 0 || again.Unchanged != 3 {
		t.Fatalf("re-run: %+v, %v", again, err)
	}
	good[1].Domains = []string{"b.example.com", "www.b.example.com"}
	changed, err := iss.IssueBatch(ctx, good, nil)
	if err != nil || changed.Changed != 1 || changed.Unchanged != 2 {
		t.Fatalf("changed domains: %+v, %v", changed, err)
	}
	if c, _ := st.CertificateByName(ctx, "b"); len(c.Domains) != 2 || Status(c.Status) != StatusPendingDelegation {
		t.Errorf("b after the change: %+v", c)
	}
}

// TestIndexCorrected: rows the migration marked due (next_action 1 ns)
// are planned on their first visit: a failed first issuance leaves the
// index, a pending one gets its next check, and neither is handed out
// again.
func TestIndexCorrected(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	iss, st := newTestIssuer(t, clock)
	migrated := time.Unix(0, 1)
	for _, c := range []store.Certificate{
		{Name: "failed", Domains: []string{"f.example.com"}, Status: string(StatusFailed), NextAction: migrated},
		{Name: "later", Domains: []string{"l.example.com"}, Status: string(StatusProcessing), NextAttempt: clock.Now().Add(time.Hour), NextAction: migrated},
		{Name: "gone", Domains: []string{"g.example.com"}, Status: string(StatusRevoked), NextAction: migrated},
	} {
		if err := st.SaveCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	iss.orderDue(ctx, "failed")
	iss.orderDue(ctx, "later")
	iss.planDue(ctx, "gone")
	for name, want := range map[string]time.Time{"failed": {}, "later": clock.Now().Add(time.Hour), "gone": {}} {
		c, err := st.CertificateByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !c.NextAction.Equal(want) {
			t.Errorf("%s: next action %v, want %v", name, c.NextAction, want)
		}
	}
}
