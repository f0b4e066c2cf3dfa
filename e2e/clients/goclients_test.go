package clients

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cpuacmedns "github.com/cpu/goacmedns"
	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/challenge"
	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/registration"
	"github.com/nrdcg/goacmedns"
)

// Module paths of the Go clients under test (their versions come from the
// test binary's build info, i.e. go.mod).
const (
	modNrdcg = "github.com/nrdcg/goacmedns"
	modCPU   = "github.com/cpu/goacmedns"
	modLego  = "github.com/go-acme/lego/v4"
)

// updateTimeout bounds one /update through a Go client.
const updateTimeout = 30 * time.Second

// updateFunc puts value into the account that serves domain's challenge
// ("example.test" for both the apex and the wildcard authorization).
type updateFunc func(ctx context.Context, domain, value string) error

// clientProvider is a lego challenge provider whose only work is the Go
// client's update: lego drives the order, the client under test talks to
// delegated. Nothing is removed at the end, as with acme-dns.
type clientProvider struct{ update updateFunc }

var (
	_ challenge.Provider        = clientProvider{}
	_ challenge.ProviderTimeout = clientProvider{}
)

func (p clientProvider) Present(domain, _, keyAuth string) error {
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	return p.update(ctx, domain, dns01.GetChallengeInfo(domain, keyAuth).Value)
}

func (p clientProvider) CleanUp(_, _, _ string) error { return nil }

// Timeout keeps lego's propagation polling short: delegated serves a value
// before /update returns, and lego sleeps one interval before its first
// check.
func (p clientProvider) Timeout() (timeout, interval time.Duration) {
	return time.Minute, 250 * time.Millisecond
}

// acmeUser is a fresh ACME account for one issuance.
type acmeUser struct {
	key crypto.PrivateKey
	reg *registration.Resource
}

func (u *acmeUser) GetEmail() string                        { return "" }
func (u *acmeUser) GetRegistration() *registration.Resource { return u.reg }
func (u *acmeUser) GetPrivateKey() crypto.PrivateKey        { return u.key }

// obtainWithLego obtains the apex and wildcard certificate through the lego
// library with update as the DNS-01 provider, and returns the PEM bundle.
func (s *stack) obtainWithLego(t *testing.T, update updateFunc) ([]byte, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("account key: %w", err)
	}
	user := &acmeUser{key: key}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = s.ca.DirectoryURL
	cfg.Certificate.KeyType = certcrypto.EC256
	cfg.HTTPClient = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:           nil,
			TLSClientConfig: &tls.Config{RootCAs: s.ca.MiniCA, MinVersion: tls.VersionTLS12},
		},
	}
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("lego client: %w", err)
	}
	if user.reg, err = client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true}); err != nil {
		return nil, fmt.Errorf("acme account: %w", err)
	}
	// AddRecursiveNameservers sets a lego package variable; the subtests
	// run one after another and all set the same value.
	err = client.Challenge.SetDNS01Provider(clientProvider{update: update},
		dns01.AddRecursiveNameservers([]string{s.resolver.Addr}),
		dns01.DisableAuthoritativeNssPropagationRequirement(),
		dns01.RecursiveNSsPropagationRequirement())
	if err != nil {
		return nil, fmt.Errorf("dns-01 provider: %w", err)
	}
	res, err := client.Certificate.Obtain(certificate.ObtainRequest{
		Domains: []string{customerDomain, "*." + customerDomain},
		Bundle:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("obtain: %w", err)
	}
	return res.Certificate, nil
}

// issueWithGoClient runs one Go client's issuance and its checks.
func (s *stack) issueWithGoClient(t *testing.T, is *issuance, update updateFunc) {
	t.Helper()
	var bundle []byte
	err := is.measure(func() error {
		var err error
		bundle, err = s.obtainWithLego(t, update)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.verifyCertificate(t, bundle)
	is.markOK()
}

// testNrdcgGoacmedns: what lego ≥ 4.22 and cert-manager ≥ 1.19 link. The
// credentials are in cert-manager's acmedns.json shape: the operator pastes
// the /register reply under the non-wildcard domain, cert-manager decodes
// the file into goacmedns accounts and looks the challenge's DNSName up
// (the wildcard's is the bare domain).
func testNrdcgGoacmedns(t *testing.T, s *stack) {
	is := trackIssuance(t, "go-nrdcg-goacmedns", moduleVersion(t, modNrdcg)+"+lego-"+moduleVersion(t, modLego))
	client, err := goacmedns.NewClient(s.apiURL)
	if err != nil {
		t.Fatal(err)
	}

	// The client's own registration (lego's first-use path) with an
	// allowfrom list; the account is not used further.
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	reg, err := client.RegisterAccount(ctx, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatalf("goacmedns register: %v", err)
	}
	if reg.Username == "" || reg.Password == "" || reg.FullDomain != reg.SubDomain+"."+serviceZone || reg.ServerURL != s.apiURL {
		t.Fatalf("goacmedns register: incomplete account %+v", reg)
	}

	_, body := s.register(t)
	dir := t.TempDir()
	credsPath := filepath.Join(dir, "acmedns.json")
	creds := fmt.Sprintf("{%q: %s}\n", customerDomain, strings.TrimSpace(string(body)))
	if err := os.WriteFile(credsPath, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	var accounts map[string]goacmedns.Account
	if err := json.Unmarshal(raw, &accounts); err != nil {
		t.Fatalf("acmedns.json: %v\n%s", err, raw)
	}
	acct, ok := accounts[customerDomain]
	if !ok {
		t.Fatalf("acmedns.json has no %s:\n%s", customerDomain, raw)
	}
	s.delegate(t, acct.FullDomain)

	s.issueWithGoClient(t, is, func(ctx context.Context, domain, value string) error {
		a, ok := accounts[strings.TrimPrefix(domain, "*.")]
		if !ok {
			return fmt.Errorf("acmedns.json: no account for %s", domain)
		}
		return client.UpdateTXTRecord(ctx, a, value)
	})
}

// testCPUGoacmedns: cpu/goacmedns v0.1.1 (older lego and cert-manager,
// acme-dns-client) requires exactly 201 and 200 and sends capitalised JSON
// keys ("AllowFrom", "SubDomain", "Txt"). It registers its own account
// (with an allowfrom list, so the capitalised key is exercised) and keeps
// it in its file storage.
func testCPUGoacmedns(t *testing.T, s *stack) {
	is := trackIssuance(t, "go-cpu-goacmedns", moduleVersion(t, modCPU)+"+lego-"+moduleVersion(t, modLego))
	client := cpuacmedns.NewClient(s.apiURL)
	acct, err := client.RegisterAccount([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatalf("goacmedns register: %v", err)
	}
	path := filepath.Join(t.TempDir(), "goacmedns.json")
	st := cpuacmedns.NewFileStorage(path, 0o600)
	if err := st.Put(customerDomain, acct); err != nil {
		t.Fatal(err)
	}
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	// Read back as a later run of the client would.
	stored, err := cpuacmedns.NewFileStorage(path, 0o600).Fetch(customerDomain)
	if err != nil {
		t.Fatal(err)
	}
	if stored.FullDomain != stored.SubDomain+"."+serviceZone {
		t.Fatalf("goacmedns account: fulldomain %q, subdomain %q", stored.FullDomain, stored.SubDomain)
	}
	s.delegate(t, stored.FullDomain)

	s.issueWithGoClient(t, is, func(_ context.Context, domain, value string) error {
		if d := strings.TrimPrefix(domain, "*."); d != customerDomain {
			return fmt.Errorf("no account for %s", domain)
		}
		// v0.1.1 takes no context; it applies its own 30 s timeout.
		return client.UpdateTXTRecord(stored, value)
	})
}
