package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCertificates(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		if _, err := s.CertificateByName(ctx, "none"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing certificate: got %v, want ErrNotFound", err)
		}
		notAfter := clock.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
		certs := []Certificate{
			{Name: "b.example", Domains: []string{"b.example", "*.b.example"}, Status: "pending delegation", LastError: "no record"},
			{Name: "a.example", Domains: []string{"a.example"}, Status: "active", CertPEM: "C", ChainPEM: "CH", KeyPEM: "K",
				Serial: "0a1b", NotBefore: clock.Now().Truncate(time.Second), NotAfter: notAfter},
		}
		for _, c := range certs {
			if err := s.SaveCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.CertificateByName(ctx, "a.example")
		if err != nil {
			t.Fatal(err)
		}
		if got.KeyPEM != "K" || got.CertPEM != "C" || got.ChainPEM != "CH" || got.Serial != "0a1b" ||
			!got.NotAfter.Equal(notAfter) || !slices.Equal(got.Domains, []string{"a.example"}) || got.CreatedAt.IsZero() {
			t.Errorf("round trip: %+v", got)
		}
		if !got.NextAttempt.IsZero() {
			t.Errorf("zero NextAttempt came back as %v", got.NextAttempt)
		}

		// Replacing keeps created_at and updates the rest.
		clock.Advance(time.Hour)
		got.Status, got.Attempts, got.NextAttempt = "processing", 2, clock.Now().Add(15*time.Minute)
		if err := s.SaveCertificate(ctx, got); err != nil {
			t.Fatal(err)
		}
		again, err := s.CertificateByName(ctx, "a.example")
		if err != nil {
			t.Fatal(err)
		}
		if again.Status != "processing" || again.Attempts != 2 || !again.NextAttempt.Equal(got.NextAttempt) || !again.CreatedAt.Equal(got.CreatedAt) || !again.UpdatedAt.After(again.CreatedAt) {
			t.Errorf("after update: %+v", again)
		}

		all, err := s.Certificates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].Name != "a.example" || all[1].Name != "b.example" {
			t.Errorf("list: %+v", all)
		}
		if err := s.DeleteCertificate(ctx, "a.example"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteCertificate(ctx, "a.example"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: got %v, want ErrNotFound", err)
		}
	})
}

func TestChallengeNames(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := openStore(t, b, Options{})
		n := ChallengeName{BaseName: "example.com", Subdomain: "sub-1", Username: "u-1"}
		if err := s.AddChallengeName(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := s.AddChallengeName(ctx, ChallengeName{BaseName: "example.com", Subdomain: "sub-2", Username: "u-2"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("second mapping for one base name: got %v, want ErrConflict", err)
		}
		got, err := s.ChallengeNameByBase(ctx, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if got.Subdomain != "sub-1" || got.Username != "u-1" {
			t.Errorf("got %+v", got)
		}
		if err := s.DeleteChallengeName(ctx, "example.com"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ChallengeNameByBase(ctx, "example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: got %v, want ErrNotFound", err)
		}
	})
}

func TestACMEAccounts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := openStore(t, b, Options{})
		dir := "https://ca.example/dir"
		if _, err := s.ACMEAccountFor(ctx, dir, "a@example.com"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		for _, a := range []ACMEAccount{
			{Directory: dir, Email: "a@example.com", KeyPEM: "K1", URI: "https://ca.example/acct/1"},
			{Directory: dir, Email: "b@example.com", KeyPEM: "K2", URI: "https://ca.example/acct/2"},
			{Directory: dir, Email: "a@example.com", KeyPEM: "K3", URI: "https://ca.example/acct/3"},
		} {
			if err := s.SaveACMEAccount(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		for email, want := range map[string]string{"a@example.com": "K3", "b@example.com": "K2"} {
			got, err := s.ACMEAccountFor(ctx, dir, email)
			if err != nil {
				t.Fatal(err)
			}
			if got.KeyPEM != want {
				t.Errorf("%s: key %q, want %q", email, got.KeyPEM, want)
			}
		}
		if _, err := s.ACMEAccountFor(ctx, "https://other.example/dir", "a@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("account is per directory: got %v", err)
		}
	})
}

// TestKeysNeverLogged: logging a certificate or an account prints no key.
func TestKeysNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("c", "cert", Certificate{Name: "n", KeyPEM: "-----BEGIN EC PRIVATE KEY-----SECRET"})
	log.Info("a", "acct", ACMEAccount{Email: "e", KeyPEM: "-----BEGIN EC PRIVATE KEY-----SECRET"})
	if strings.Contains(buf.String(), "SECRET") {
		t.Errorf("a key reached the log: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "cert.name=n") {
		t.Errorf("the certificate's name is missing: %s", buf.String())
	}
}
