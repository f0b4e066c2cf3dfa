package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCertificateIndex: summaries leave key material out and filter by
// status and domain; due work comes from next_action per status, the
// longest waiting first; the next action after now is found.
func TestCertificateIndex(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		now := clock.Now()
		for _, c := range []Certificate{
			{Name: "a", Domains: []string{"a.example.com", "*.a.example.com"}, Status: "active", CertPEM: "C", KeyPEM: "SECRET", Serial: "01", NextAction: now.Add(time.Hour)},
			{Name: "b", Domains: []string{"b.example.org"}, Status: "pending delegation", NextAction: now.Add(-time.Minute)},
			{Name: "c", Domains: []string{"example.com"}, Status: "pending delegation", NextAction: now.Add(-2 * time.Minute)},
			{Name: "d", Domains: []string{"d.example.net"}, Status: "processing", NextAction: now},
			{Name: "e", Domains: []string{"notexample.com"}, Status: "revoked"},
		} {
			if err := s.SaveCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.CertificateSummaries(ctx, CertificateFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 5 || all[0].Name != "a" || all[0].KeyPEM != "" || all[0].CertPEM != "" || all[0].Serial != "01" {
			t.Fatalf("summaries: %+v", all)
		}
		for _, tc := range []struct {
			f    CertificateFilter
			want []string
		}{
			{CertificateFilter{Status: "pending delegation"}, []string{"b", "c"}},
			{CertificateFilter{Domain: "example.com"}, []string{"a", "c"}},
			{CertificateFilter{Domain: "EXAMPLE.com."}, []string{"a", "c"}},
			{CertificateFilter{Domain: "a.example.com"}, []string{"a"}},
			{CertificateFilter{Domain: "example.com", Status: "active"}, []string{"a"}},
			{CertificateFilter{Domain: "x_%"}, nil},
		} {
			got, err := s.CertificateSummaries(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range got {
				names = append(names, c.Name)
			}
			if len(names) != len(tc.want) || len(names) > 0 && names[0] != tc.want[0] || len(names) > 1 && names[1] != tc.want[1] {
				t.Errorf("%+v: got %v, want %v", tc.f, names, tc.want)
			}
		}
		due, err := s.DueCertificates(ctx, now, "pending delegation", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != 2 || due[0].Name != "c" || due[1].Name != "b" {
			t.Errorf("due pending: %+v, want c then b", due)
		}
		if due, _ := s.DueCertificates(ctx, now, "pending delegation", 1); len(due) != 1 || due[0].Name != "c" {
			t.Errorf("limit 1: %+v", due)
		}
		if due, _ := s.DueCertificates(ctx, now, "active", 10); len(due) != 0 {
			t.Errorf("active is not due yet: %+v", due)
		}
		if next, err := s.NextActionAfter(ctx, now); err != nil || !next.Equal(now.Add(time.Hour)) {
			t.Errorf("next action %v, %v; want %v", next, err, now.Add(time.Hour))
		}
		if oldest, err := s.OldestDue(ctx, now); err != nil || !oldest.Equal(now.Add(-2*time.Minute)) {
			t.Errorf("oldest due %v, %v", oldest, err)
		}
		counts, err := s.CertificateCounts(ctx)
		if err != nil || counts["pending delegation"] != 2 || counts["active"] != 1 || counts["revoked"] != 1 {
			t.Errorf("counts %v, %v", counts, err)
		}
	})
}

// TestRecordChecks: a check result applies only to a row still pending and
// unchanged since the check read it.
func TestRecordChecks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		for _, n := range []string{"p", "q"} {
			if err := s.SaveCertificate(ctx, Certificate{Name: n, Domains: []string{n + ".example"}, Status: "pending delegation"}); err != nil {
				t.Fatal(err)
			}
		}
		p, _ := s.CertificateByName(ctx, "p")
		q, _ := s.CertificateByName(ctx, "q")
		clock.Advance(time.Second)
		// q changes after its check began (a lease holder moved it on).
		q.Status = "processing"
		if err := s.SaveCertificate(ctx, q); err != nil {
			t.Fatal(err)
		}
		next := clock.Now().Add(time.Minute)
		n, err := s.RecordChecks(ctx, []CheckResult{
			{Name: "p", Seen: p.UpdatedAt, LastError: "no record", CheckFailures: 2, NextAction: next},
			{Name: "q", Seen: q.CreatedAt, LastError: "stale", NextAction: next},
		}, "pending delegation")
		if err != nil || n != 1 {
			t.Fatalf("applied %d, %v; want 1", n, err)
		}
		p, _ = s.CertificateByName(ctx, "p")
		if p.LastError != "no record" || p.CheckFailures != 2 || !p.NextAction.Equal(next) {
			t.Errorf("p after the check: %+v", p)
		}
		if q, _ = s.CertificateByName(ctx, "q"); q.Status != "processing" || q.LastError == "stale" {
			t.Errorf("a stale check overwrote q: %+v", q)
		}
		// The same result again: p changed since, so nothing applies.
		if n, _ := s.RecordChecks(ctx, []CheckResult{{Name: "p", Seen: time.Unix(0, 1), LastError: "x"}}, "pending delegation"); n != 0 {
			t.Errorf("a result for an older row applied")
		}
	})
}

// TestCreateCertificatesAndRelease: a batch reserves challenge names and
// creates certificates in one transaction (a taken base name refuses all
// of it); a re-run skips existing certificates; a fenced delete releases
// the subdomains no other certificate uses, in one transaction.
func TestCreateCertificatesAndRelease(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		acct := func(base, sub, user string) ChallengeAccount {
			return ChallengeAccount{Account: Account{Username: user, KeyHash: "h", Subdomain: sub}, Name: ChallengeName{BaseName: base, Subdomain: sub, Username: user}}
		}
		r1 := acct("one.example", "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-0000000000a1")
		r2 := acct("two.example", "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-0000000000a2")
		certs := []Certificate{
			{Name: "one", Domains: []string{"one.example", "*.one.example"}, Status: "pending delegation", NextAction: clock.Now()},
			{Name: "two", Domains: []string{"two.example"}, Status: "pending delegation", NextAction: clock.Now()},
			{Name: "both", Domains: []string{"two.example", "www.one.example"}, Status: "pending delegation", NextAction: clock.Now()},
		}
		if err := s.CreateCertificates(ctx, []ChallengeAccount{r1, r2}, certs); err != nil {
			t.Fatal(err)
		}
		// A batch reserving a taken base name writes nothing.
		r3 := acct("three.example", "00000000-0000-4000-8000-000000000003", "00000000-0000-4000-8000-0000000000a3")
		dup := acct("one.example", "00000000-0000-4000-8000-000000000004", "00000000-0000-4000-8000-0000000000a4")
		err := s.CreateCertificates(ctx, []ChallengeAccount{r3, dup}, []Certificate{{Name: "three", Domains: []string{"three.example"}, Status: "pending delegation"}})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("taken base name: %v, want ErrConflict", err)
		}
		if _, err := s.ChallengeNameByBase(ctx, "three.example"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused batch reserved three.example: %v", err)
		}
		if _, err := s.AccountByUsername(ctx, r3.Account.Username); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused batch left an account behind: %v", err)
		}
		// A re-run changes nothing.
		changed := certs[0]
		changed.Status = "active"
		if err := s.CreateCertificates(ctx, nil, []Certificate{changed}); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.CertificateByName(ctx, "one"); c.Status != "pending delegation" {
			t.Errorf("a re-run replaced an existing certificate: %+v", c)
		}
		// Fenced delete: without the lease nothing happens.
		bad := Fence{Lease: "cert:two", Holder: "me", Token: 1, TTL: time.Minute}
		if _, err := s.DeleteCertificateReleasing(ctx, "two", bad, []string{"two.example"}); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("delete without the lease: %v, want ErrLeaseLost", err)
		}
		tok, err := s.AcquireLease(ctx, "cert:two", "me", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		f := Fence{Lease: "cert:two", Holder: "me", Token: tok, TTL: time.Minute}
		released, err := s.DeleteCertificateReleasing(ctx, "two", f, []string{"two.example"})
		if err != nil || len(released) != 0 {
			t.Fatalf("delete two: released %v, %v; want none (both still uses two.example)", released, err)
		}
		tok, _ = s.AcquireLease(ctx, "cert:both", "me", time.Minute)
		released, err = s.DeleteCertificateReleasing(ctx, "both", Fence{Lease: "cert:both", Holder: "me", Token: tok, TTL: time.Minute}, []string{"two.example", "one.example"})
		if err != nil || len(released) != 1 || released[0].BaseName != "two.example" {
			t.Fatalf("delete both: released %v, %v; want two.example only", released, err)
		}
		if _, err := s.AccountByUsername(ctx, r2.Account.Username); !errors.Is(err, ErrNotFound) {
			t.Errorf("released subdomain's account remains: %v", err)
		}
		if _, err := s.ChallengeNameByBase(ctx, "one.example"); err != nil {
			t.Errorf("one.example, still used by one, was released: %v", err)
		}
	})
}
