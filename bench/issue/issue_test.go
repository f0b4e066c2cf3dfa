// Package issue measures issuance time for apex + wildcard once delegation
// is in place: delegated's own issuer (seconds from running `delegated
// issue` to its exit with the files deployed) against the plain lego
// library path through the same daemon and Pebble. Run with ./run.sh.
package issue_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/providers/dns/acmedns"
	"github.com/go-acme/lego/v4/registration"
	"github.com/nrdcg/goacmedns"
	"github.com/nrdcg/goacmedns/storage"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

var recordRE = regexp.MustCompile(`(?m)^(_acme-challenge\.[a-z0-9.-]+\.) CNAME (\S+)$`)

// delegate asks the daemon for the records of a first certificate, creates
// them in the customer zone and waits until it is active, so the measured
// issuances find delegation in place.
func delegate(b *testing.B, s *e2e.Stack, extra map[string]string) {
	b.Helper()
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "setup", "-d", "example.test", "-d", "*.example.test")
	if code != 0 {
		b.Fatalf("issue: exit %d: %s", code, out)
	}
	cnames := map[string]string{}
	for _, m := range recordRE.FindAllStringSubmatch(out, -1) {
		cnames[m[1]] = m[2]
	}
	for k, v := range extra {
		cnames[k] = v
	}
	s.SetCNAMEs(cnames)
	harness.Eventually(b, time.Minute, 100*time.Millisecond, "setup certificate active", func() error {
		c, err := s.Certificate("setup")
		if err != nil {
			return err
		}
		if c.Status != "active" {
			return fmt.Errorf("status %s", c.Status)
		}
		return nil
	})
}

// BenchmarkDelegatedIssue: `delegated issue` until it exits with the
// certificate deployed.
func BenchmarkDelegatedIssue(b *testing.B) {
	s := e2e.Start(b, e2e.Options{})
	delegate(b, s, nil)
	b.ResetTimer()
	var total time.Duration
	// Names unique across the benchmark's rounds: re-issuing an active
	// certificate for the same domains is a no-op and would not measure.
	round := time.Now().UnixNano()
	for n := 0; n < b.N; n++ {
		name := fmt.Sprintf("bench-%d-%d", round, n)
		started := time.Now()
		out, code := s.CLI("issue", "--cert-name", name, "-d", "example.test", "-d", "*.example.test")
		took := time.Since(started)
		total += took
		if code != 0 || !strings.Contains(out, "finalize ✓") {
			b.Fatalf("issue: exit %d, no new certificate: %s", code, out)
		}
		c, err := s.Certificate(name)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := os.Stat(c.Paths.FullChain); err != nil {
			b.Fatalf("not deployed: %v", err)
		}
		b.Logf("delegated issue %s: %.3f s", name, took.Seconds())
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/issue")
}

type legoUser struct{ key crypto.PrivateKey }

func (u *legoUser) GetEmail() string                        { return "bench@example.test" }
func (u *legoUser) GetRegistration() *registration.Resource { return nil }
func (u *legoUser) GetPrivateKey() crypto.PrivateKey        { return u.key }

// BenchmarkPlainLego: lego's high-level client (Certificate.Obtain) with
// lego's acme-dns style provider against the same daemon's /update.
// "defaults" keeps lego's 2 s polling interval and recursive propagation
// check, as an acme-dns user runs it; "tuned" gives lego every advantage
// our zone allows (10 ms interval, no propagation check), leaving only its
// resolver's structure: authorizations validated one after another, each
// polled with Retry-After or 5 s.
func BenchmarkPlainLego(b *testing.B) {
	s := e2e.Start(b, e2e.Options{})
	// The daemon's API serves an account of lego's for
	// www.example.test (and *.www.example.test), delegated by CNAME
	// together with the issuer's own records.
	resp, err := http.Post(s.APIURL+"/register", "application/json", nil)
	if err != nil {
		b.Fatal(err)
	}
	var acct goacmedns.Account
	if err := json.NewDecoder(resp.Body).Decode(&acct); err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	acct.ServerURL = s.APIURL
	delegate(b, s, map[string]string{"_acme-challenge.www.example.test.": acct.FullDomain + "."})
	// lego's own acme-dns provider, with the account in its storage file,
	// as an acme-dns user runs it.
	storagePath := filepath.Join(b.TempDir(), "acme-dns.json")
	accounts := storage.NewFile(storagePath, 0o600)
	if err := accounts.Put(context.Background(), "www.example.test", acct); err != nil {
		b.Fatal(err)
	}
	if err := accounts.Save(context.Background()); err != nil {
		b.Fatal(err)
	}

	for _, variant := range []string{"defaults", "tuned"} {
		b.Run(variant, func(b *testing.B) {
			interval := dns01.DefaultPollingInterval
			if variant == "tuned" {
				interval = 10 * time.Millisecond
			}
			legoProv, err := acmedns.NewDNSProviderConfig(&acmedns.Config{APIBase: s.APIURL, StoragePath: storagePath})
			if err != nil {
				b.Fatal(err)
			}
			prov := pollingProvider{legoProv, interval}
			key, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
			if err != nil {
				b.Fatal(err)
			}
			cfg := lego.NewConfig(&legoUser{key: key})
			cfg.CADirURL = s.Pebble.DirectoryURL
			cfg.Certificate.KeyType = certcrypto.EC256
			cfg.HTTPClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Pebble.MiniCA}}}
			client, err := lego.NewClient(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true}); err != nil {
				b.Fatal(err)
			}
			// dns01's resolvers are package state: set here, once per
			// variant, in this one place.
			opts := []dns01.ChallengeOption{dns01.AddRecursiveNameservers([]string{s.Resolver.Addr})}
			if variant == "tuned" {
				opts = append(opts, dns01.PropagationWait(0, true))
			} else {
				opts = append(opts, dns01.DisableAuthoritativeNssPropagationRequirement(), dns01.RecursiveNSsPropagationRequirement())
			}
			if err := client.Challenge.SetDNS01Provider(prov, opts...); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var total time.Duration
			for n := 0; n < b.N; n++ {
				started := time.Now()
				res, err := client.Certificate.Obtain(certificate.ObtainRequest{Domains: []string{"www.example.test", "*.www.example.test"}, Bundle: true})
				took := time.Since(started)
				total += took
				if err != nil {
					b.Fatal(err)
				}
				if !strings.Contains(string(res.Certificate), "BEGIN CERTIFICATE") {
					b.Fatal("no certificate")
				}
				b.Logf("plain lego (%s): %.3f s", variant, took.Seconds())
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/issue")
		})
	}
}

// pollingProvider gives lego's acme-dns provider a propagation polling
// interval (challenge.ProviderTimeout), which it lacks: "tuned" polls
// every 10 ms.
type pollingProvider struct {
	*acmedns.DNSProvider
	interval time.Duration
}

func (p pollingProvider) Timeout() (timeout, interval time.Duration) {
	return dns01.DefaultPropagationTimeout, p.interval
}
