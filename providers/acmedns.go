package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/challenge"
	"github.com/go-acme/lego/v4/challenge/dns01"
)

// RemoteAccount is one registration on a remote acme-dns-compatible server,
// in the shape /register returns (and lego and cert-manager store).
// Password is the API key; LogValue omits it.
type RemoteAccount struct {
	Username   string `json:"username"`
	Password   string `json:"password"`
	Subdomain  string `json:"subdomain"`
	FullDomain string `json:"fulldomain"`
}

// LogValue keeps the API key out of logs.
func (a RemoteAccount) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", a.Username), slog.String("subdomain", a.Subdomain))
}

// ACMEDNSOptions configures ACMEDNS.
type ACMEDNSOptions struct {
	// ServerURL is the server's base URL, e.g. "https://auth.example.org".
	ServerURL string
	// Accounts maps a base name (see BaseName) to its account.
	Accounts map[string]RemoteAccount
	// HTTPClient; default a client with Timeout.
	HTTPClient *http.Client
	// Timeout bounds each lego call; 0 means DefaultTimeout.
	Timeout time.Duration
	// PollingInterval is lego's interval between propagation checks (and
	// its sleep before the first); default 2s, since a remote server's DNS
	// may lag its API.
	PollingInterval time.Duration
}

// ACMEDNS is a provider for a remote acme-dns-compatible server: Present
// POSTs /update with X-Api-User and X-Api-Key. The acme-dns protocol has no
// removal, so CleanUp does nothing: the server keeps the newest values and
// rotates old ones out.
type ACMEDNS struct {
	opts ACMEDNSOptions
}

var (
	_ challenge.Provider        = (*ACMEDNS)(nil)
	_ challenge.ProviderTimeout = (*ACMEDNS)(nil)
)

// NewACMEDNS validates opts and returns the provider.
func NewACMEDNS(opts ACMEDNSOptions) (*ACMEDNS, error) {
	if opts.ServerURL == "" {
		return nil, fmt.Errorf("acme-dns provider: no server URL")
	}
	opts.ServerURL = strings.TrimSuffix(opts.ServerURL, "/")
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.PollingInterval <= 0 {
		opts.PollingInterval = dns01.DefaultPollingInterval
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: opts.Timeout}
	}
	accounts := make(map[string]RemoteAccount, len(opts.Accounts))
	for base, a := range opts.Accounts {
		if a.Username == "" || a.Password == "" || a.Subdomain == "" {
			return nil, fmt.Errorf("acme-dns provider: account for %s lacks username, password or subdomain", base)
		}
		accounts[BaseName(base)] = a
	}
	opts.Accounts = accounts
	return &ACMEDNS{opts: opts}, nil
}

// Present implements challenge.Provider.
func (p *ACMEDNS) Present(domain, _, keyAuth string) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.Timeout)
	defer cancel()
	return p.PresentContext(ctx, domain, keyAuth)
}

// CleanUp implements challenge.Provider; see ACMEDNS.
func (p *ACMEDNS) CleanUp(_, _, _ string) error { return nil }

// CleanUpContext is CleanUp with a context.
func (p *ACMEDNS) CleanUpContext(context.Context, string, string) error { return nil }

// Timeout implements challenge.ProviderTimeout.
func (p *ACMEDNS) Timeout() (timeout, interval time.Duration) {
	return dns01.DefaultPropagationTimeout, p.opts.PollingInterval
}

// PresentContext sends the DNS-01 value for domain to the server.
func (p *ACMEDNS) PresentContext(ctx context.Context, domain, keyAuth string) error {
	acct, ok := p.opts.Accounts[BaseName(domain)]
	if !ok {
		return fmt.Errorf("acme-dns provider: no account for %s", BaseName(domain))
	}
	value := dns01.GetChallengeInfo(domain, keyAuth).Value
	body, err := json.Marshal(map[string]string{"subdomain": acct.Subdomain, "txt": value})
	if err != nil {
		return fmt.Errorf("acme-dns provider: present %s: %w", domain, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.ServerURL+"/update", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("acme-dns provider: present %s: %w", domain, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-User", acct.Username)
	req.Header.Set("X-Api-Key", acct.Password)
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("acme-dns provider: present %s: %w", domain, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("acme-dns provider: present %s: %s answered %s: %s", domain, p.opts.ServerURL, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
