package harness

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Paths inside the Pebble module source (PebbleSourceDir).
const (
	pebbleMiniCA  = "test/certs/pebble.minica.pem"
	pebbleTLSCert = "test/certs/localhost/cert.pem"
	pebbleTLSKey  = "test/certs/localhost/key.pem"
)

// DefaultValidityPeriod is Pebble's default profile validity, 90 days, which
// puts ARI's suggested window at about days 59 to 61.
const DefaultValidityPeriod = 90 * 24 * time.Hour

// PebbleOptions configures Pebble.
type PebbleOptions struct {
	// DNSServer is the resolver Pebble's VA queries, "127.0.0.1:port"
	// (normally an Unbound's Addr). Required: without it Pebble would use
	// the system resolver, which is not on loopback.
	DNSServer string
	// ListenPort (ACME, HTTPS) and ManagementPort (HTTPS); 0 picks one.
	ListenPort, ManagementPort int
	// HTTPPort and TLSPort are where the VA connects for http-01 and
	// tls-alpn-01 (Pebble does not listen on them); 0 means 5002 and 5001.
	HTTPPort, TLSPort int
	// ValidityPeriod of the "default" profile; 0 means
	// DefaultValidityPeriod. Whole seconds.
	ValidityPeriod time.Duration
	// Env entries are added to Pebble's environment after the harness
	// defaults (PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0
	// PEBBLE_AUTHZREUSE=0), so they can override them. Even at 0, Pebble
	// reuses an account's valid authorization 1% of the time.
	Env []string
	// Strict runs Pebble with -strict.
	Strict bool
	// Modify, if set, edits the config just before it is written (extra
	// profiles, EAB, domain blocklist, retry-after).
	Modify func(*PebbleConfig)
	// StartTimeout defaults to DefaultStartTimeout.
	StartTimeout time.Duration
}

// PebbleConfig is pebble.json (Pebble's own field names).
type PebbleConfig struct {
	Pebble PebbleSettings `json:"pebble"`
}

// PebbleSettings is the "pebble" object of pebble.json.
type PebbleSettings struct {
	ListenAddress                  string                   `json:"listenAddress"`
	ManagementListenAddress        string                   `json:"managementListenAddress"`
	Certificate                    string                   `json:"certificate"`
	PrivateKey                     string                   `json:"privateKey"`
	HTTPPort                       int                      `json:"httpPort"`
	TLSPort                        int                      `json:"tlsPort"`
	OCSPResponderURL               string                   `json:"ocspResponderURL,omitempty"`
	ExternalAccountBindingRequired bool                     `json:"externalAccountBindingRequired,omitempty"`
	ExternalAccountMACKeys         map[string]string        `json:"externalAccountMACKeys,omitempty"`
	DomainBlocklist                []string                 `json:"domainBlocklist,omitempty"`
	RetryAfter                     PebbleRetryAfter         `json:"retryAfter"`
	KeyAlgorithm                   string                   `json:"keyAlgorithm"`
	Profiles                       map[string]PebbleProfile `json:"profiles"`
}

// PebbleRetryAfter is the Retry-After, in seconds, Pebble sends on
// authorizations and orders.
type PebbleRetryAfter struct {
	Authz int `json:"authz"`
	Order int `json:"order"`
}

// PebbleProfile is one certificate profile; ValidityPeriod is in seconds.
type PebbleProfile struct {
	Description    string `json:"description"`
	ValidityPeriod uint64 `json:"validityPeriod"`
}

// Pebble is a running Pebble ACME server.
type Pebble struct {
	// DirectoryURL is "https://127.0.0.1:port/dir".
	DirectoryURL string
	// ManagementURL is "https://127.0.0.1:port", without a trailing slash.
	ManagementURL string
	// MiniCAPath is a PEM file of the CA that signed Pebble's HTTPS
	// certificate (not the issuing root: see Root). Give it to clients as
	// LEGO_CA_CERTIFICATES or REQUESTS_CA_BUNDLE.
	MiniCAPath string
	// MiniCA holds the same CA for Go clients.
	MiniCA *x509.CertPool
	// ConfigPath is the pebble.json written; Dir is Pebble's working
	// directory.
	ConfigPath, Dir string
	Proc            *Process

	client *http.Client
}

// StartPebble writes pebble.json per the recipe, starts Pebble with its
// working directory in a temp dir and waits until the directory answers.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	bin := RequireTool(t, "pebble", HintPebble)
	src := requirePebbleSource(t)
	if err := requireLoopback(opts.DNSServer); err != nil {
		// Without it Pebble would use the system resolver, which is
		// off limits.
		t.Fatalf("harness: StartPebble: PebbleOptions.DNSServer: %v", err)
	}
	dir := t.TempDir()
	minica := filepath.Join(dir, "pebble-minica.pem")
	for _, f := range []struct {
		from, to string
		perm     os.FileMode
	}{
		{pebbleTLSCert, "pebble-tls.pem", 0o644},
		{pebbleTLSKey, "pebble-tls.key", 0o600},
		{pebbleMiniCA, "pebble-minica.pem", 0o644},
	} {
		if err := copyFile(filepath.Join(src, f.from), filepath.Join(dir, f.to), f.perm); err != nil {
			t.Fatalf("harness: pebble: %v", err)
		}
	}
	pool, err := loadPool(minica)
	if err != nil {
		t.Fatalf("harness: pebble: %v", err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: loopbackTransport(pool)}
	// Readiness probes give up fast, so a dead or clashing listener is
	// noticed within a second rather than after a TLS handshake timeout.
	probe := &http.Client{Timeout: time.Second, Transport: loopbackTransport(pool)}
	confPath := filepath.Join(dir, "pebble.json")
	env := append([]string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}, opts.Env...)
	args := []string{"-config", confPath, "-dnsserver", opts.DNSServer}
	if opts.Strict {
		args = append(args, "-strict")
	}

	retry := opts.ListenPort == 0 || opts.ManagementPort == 0
	pb, err := startWithRetry(retry, func() (*Pebble, error) {
		listen, err := pickPort(opts.ListenPort)
		if err != nil {
			return nil, err
		}
		mgmt, err := pickPort(opts.ManagementPort)
		if err != nil {
			return nil, err
		}
		cfg := pebbleConfig(opts, listen, mgmt)
		if opts.Modify != nil {
			opts.Modify(&cfg)
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode pebble.json: %w", err)
		}
		if err := writeFile(confPath, string(b)+"\n", 0o644); err != nil {
			return nil, err
		}
		p, err := startProcess(ProcessOptions{Name: "pebble", Path: bin, Args: args, Dir: dir, Env: env, GoStacks: true})
		if err != nil {
			return nil, err
		}
		pb := &Pebble{
			DirectoryURL:  "https://" + HostPort(listen) + "/dir",
			ManagementURL: "https://" + HostPort(mgmt),
			MiniCAPath:    minica,
			MiniCA:        pool,
			ConfigPath:    confPath,
			Dir:           dir,
			Proc:          p,
			client:        client,
		}
		// Ready when both listeners answer: clients use the directory,
		// tests the management API (Root, CertStatus).
		err = p.WaitReady(opts.StartTimeout, func() error {
			if _, err := httpGet(probe, pb.DirectoryURL); err != nil {
				return err
			}
			_, err := httpGet(probe, pb.ManagementURL+"/roots/0")
			return err
		})
		if err != nil {
			_ = p.Stop()
			return nil, err
		}
		return pb, nil
	})
	if err != nil {
		t.Fatalf("harness: start pebble: %v", err)
	}
	pb.Proc.registerCleanup(t)
	return pb
}

// pebbleConfig is the recipe's pebble.json with ports templated.
func pebbleConfig(opts PebbleOptions, listen, mgmt int) PebbleConfig {
	httpPort, tlsPort := opts.HTTPPort, opts.TLSPort
	if httpPort == 0 {
		httpPort = 5002
	}
	if tlsPort == 0 {
		tlsPort = 5001
	}
	validity := opts.ValidityPeriod
	if validity == 0 {
		validity = DefaultValidityPeriod
	}
	return PebbleConfig{Pebble: PebbleSettings{
		ListenAddress:           HostPort(listen),
		ManagementListenAddress: HostPort(mgmt),
		Certificate:             "pebble-tls.pem",
		PrivateKey:              "pebble-tls.key",
		HTTPPort:                httpPort,
		TLSPort:                 tlsPort,
		// One second keeps clients that honour Retry-After fast.
		RetryAfter:   PebbleRetryAfter{Authz: 1, Order: 1},
		KeyAlgorithm: "ecdsa",
		Profiles: map[string]PebbleProfile{
			"default": {Description: "default", ValidityPeriod: uint64(validity / time.Second)},
		},
	}}
}

// HTTPClient returns a client that trusts Pebble's HTTPS certificate.
func (p *Pebble) HTTPClient() *http.Client { return p.client }

// ClientEnv returns environment entries that make the ACME clients of the
// recipe trust Pebble's HTTPS certificate: LEGO_CA_CERTIFICATES for the lego
// CLI, REQUESTS_CA_BUNDLE for certbot (which may be preset on the machine, so
// it must be overridden, not inherited).
func (p *Pebble) ClientEnv() []string {
	return []string{"LEGO_CA_CERTIFICATES=" + p.MiniCAPath, "REQUESTS_CA_BUNDLE=" + p.MiniCAPath}
}

// RootPEM fetches the PEM of the root that issued certificates chain to.
// Pebble generates it at start, so it differs per instance.
func (p *Pebble) RootPEM() ([]byte, error) {
	return p.get(p.ManagementURL + "/roots/0")
}

// Root fetches and parses the issuing root (see RootPEM).
func (p *Pebble) Root() (*x509.Certificate, error) {
	b, err := p.RootPEM()
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("pebble root: no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pebble root: %w", err)
	}
	return c, nil
}

// RootPool returns a pool holding the issuing root, for verifying issued
// certificates.
func (p *Pebble) RootPool() (*x509.CertPool, error) {
	c, err := p.Root()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool, nil
}

// CertStatus is Pebble's /cert-status-by-serial answer.
type CertStatus struct {
	// Status is "Valid" or "Revoked".
	Status string
	// Serial is lower-case hex without leading zeros.
	Serial      string
	Certificate string
	// Reason is the CRL reason code when revoked with one.
	Reason    *uint
	RevokedAt string
}

// ErrCertNotFound is returned (wrapped) by CertStatus for a serial Pebble
// never issued.
var ErrCertNotFound = errors.New("certificate not found")

// CertStatus looks a certificate up by serial on the management API.
func (p *Pebble) CertStatus(serial *big.Int) (*CertStatus, error) {
	url := p.ManagementURL + "/cert-status-by-serial/" + serial.Text(16)
	resp, err := p.client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("pebble cert status %x: %w", serial, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("pebble cert status %x: %w", serial, ErrCertNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pebble cert status %x: %s", serial, resp.Status)
	}
	var st CertStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("pebble cert status %x: decode: %w", serial, err)
	}
	return &st, nil
}

// get fetches url and expects 200.
func (p *Pebble) get(url string) ([]byte, error) {
	return httpGet(p.client, url)
}

func httpGet(client *http.Client, url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return b, nil
}

// copyFile copies a file, used to lay out Pebble's certificate and key
// under the names pebble.json refers to (the module cache is read-only).
func copyFile(from, to string, perm os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return writeFile(to, string(b), perm)
}

// loadPool reads a PEM bundle into a fresh pool.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("load CA %s: no certificates", path)
	}
	return pool, nil
}
