package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/store"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func accountCommand() command {
	c := command{
		Name:  "account",
		Usage: "add [--config FILE] [--allow-from CIDR]... [--domain NAME] [--server-url URL] [--tsig [--tsig-algorithm A] [--tsig-name N] [--free-txt] [--nameserver HOST:PORT]]\n  account tsig --username U [--config FILE] [--algorithm A] [--name N] [--free-txt] [--domain NAME] [--nameserver HOST:PORT] | --remove",
		Short: "Create an acme-dns account directly, or give it a TSIG key for RFC 2136 updates (for operators)",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		path := fs.String("config", "config.toml", "configuration `file`")
		var allow stringList
		fs.Var(&allow, "allow-from", "`CIDR` the account may update from (repeatable; default anywhere)")
		domain := fs.String("domain", "", "the customer's `name` (e.g. example.com), for the CNAME line and the storage keys")
		serverURL := fs.String("server-url", "", "the API's public `URL` written into lego's storage (default: the first api.listen address)")
		var kf tsigFlags
		withTSIG := fs.Bool("tsig", false, "also create a TSIG key for RFC 2136 updates (nsupdate, lego/Traefik rfc2136, cert-manager)")
		kf.register(fs, "tsig-")
		if len(args) > 0 && args[0] == "tsig" {
			return accountTSIGRun(ctx, c, args[1:], stdout, stderr)
		}
		if len(args) == 0 || args[0] != "add" {
			fs.Usage()
			if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
				return flag.ErrHelp
			}
			return usageError("expected the sub-command \"add\" or \"tsig\"")
		}
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError("unexpected argument %q", fs.Arg(0))
		}
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
		}
		if !*withTSIG && kf.set(fs, "tsig-") {
			return usageError("--tsig-algorithm, --tsig-name, --free-txt and --nameserver need --tsig")
		}
		var key *tsigFlags
		if *withTSIG {
			key = &kf
		}
		return accountAdd(ctx, cfg, allow, *domain, *serverURL, key, stdout, stderr)
	}
	return c
}

// accountAdd writes the account into the store itself: the store is the
// source of truth, so this works whether or not the daemon runs and in every
// registration mode (the operator's privilege is access to the store). A
// running daemon notices the write by itself (within a second on SQLite,
// which it polls); it is also asked, with the new account's own
// credentials, to republish the account (POST /sync), so that its subdomain
// answers NODATA at once rather than NXDOMAIN for that second.
func accountAdd(ctx context.Context, cfg *config.Config, allow []string, domain, serverURL string, kf *tsigFlags, stdout, stderr io.Writer) error {
	acct, creds, err := httpapi.NewAccount(cfg.Zone.Domain, allow, cfg.API.BcryptCost)
	if err != nil {
		return usageError("--allow-from: %v", err)
	}
	var key store.TSIGKey
	if kf != nil {
		if key, err = kf.newKey(cfg, acct.Subdomain); err != nil {
			return err
		}
	}
	st, err := openStore(ctx, cfg, stderr, kf != nil)
	if err != nil {
		return err
	}
	err = st.CreateAccount(ctx, acct)
	if err == nil && kf != nil {
		err = st.SetTSIGKey(ctx, key)
	}
	if cerr := st.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	base, baseErr := daemonURL(cfg)
	if serverURL == "" {
		serverURL = base
	}
	if baseErr == nil {
		switch err := syncDaemon(ctx, cfg, base, creds); {
		case errors.Is(err, errDaemonDown):
			// Nothing runs: the next start loads the account.
		case err != nil:
			fmt.Fprintf(stderr, "warning: the running daemon at %s did not republish the account (%v); it picks the account up from the store by itself shortly\n", base, err)
		}
	}
	if err := printCredentials(stdout, creds, domain, serverURL); err != nil {
		return err
	}
	if kf != nil {
		// printCredentials printed the CNAME already.
		return printTSIGKey(stdout, cfg, key, domain, kf.nameserver, false)
	}
	return nil
}

// openStore opens the configured store; withKEK also loads (or creates)
// the key-encryption key that seals TSIG secrets.
func openStore(ctx context.Context, cfg *config.Config, stderr io.Writer, withKEK bool) (*store.Store, error) {
	opts := store.Options{
		ValuesPerAccount: cfg.Values.PerAccount,
		ValueLifetime:    cfg.Values.Lifetime.Duration,
		Logger:           slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if withKEK {
		kek, err := store.LoadKEK(cfg.DNS.TSIGKEKFile, true)
		if err != nil {
			return nil, fmt.Errorf("%s: dns.tsig_kek_file: %w", cfg.Path, err)
		}
		opts.KEK = kek
	}
	return store.Open(ctx, cfg.Store.Driver, cfg.Store.DSN, opts)
}

// legoAccount is lego's acme-dns storage entry (nrdcg/goacmedns Account).
type legoAccount struct {
	FullDomain string `json:"fulldomain"`
	SubDomain  string `json:"subdomain"`
	Username   string `json:"username"`
	Password   string `json:"password"`
	ServerURL  string `json:"server_url"`
}

// printCredentials shows the account in every shape clients read: the
// register reply, lego's storage file (ACME_DNS_STORAGE_PATH) and
// cert-manager's acmedns.json, both keyed by the non-wildcard domain, and
// the CNAME the customer creates.
func printCredentials(w io.Writer, c httpapi.Credentials, domain, serverURL string) error {
	domain = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), "."), "*.")
	key := domain
	if key == "" {
		key = "<domain>"
	}
	reg, err := marshalPlain(c)
	if err != nil {
		return err
	}
	lego, err := marshalPlain(map[string]legoAccount{key: {
		FullDomain: c.Fulldomain, SubDomain: c.Subdomain, Username: c.Username, Password: c.Password, ServerURL: serverURL,
	}})
	if err != nil {
		return err
	}
	cm, err := marshalPlain(map[string]httpapi.Credentials{key: c})
	if err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# register reply (acme-dns JSON)\n%s\n", reg)
	fmt.Fprintf(&b, "# lego --dns acme-dns storage file (ACME_DNS_STORAGE_PATH)\n%s\n", lego)
	fmt.Fprintf(&b, "# cert-manager ACMEDNS solver acmedns.json\n%s\n", cm)
	fmt.Fprintf(&b, "# CNAME to create in the customer's zone\n_acme-challenge.%s. CNAME %s.\n", key, c.Fulldomain)
	_, err = w.Write(b.Bytes())
	return err
}

// marshalPlain is json.Marshal without HTML escaping: the output is read
// by people and pasted into files, where "<domain>" must not read
// "\u003cdomain\u003e".
func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

var errDaemonDown = errors.New("daemon not running")

// daemonURL is the base URL of the first configured API listener, with an
// unspecified address replaced by loopback.
func daemonURL(cfg *config.Config) (string, error) {
	if len(cfg.API.Listen) == 0 {
		return "", errors.New("no api.listen address")
	}
	ap, err := netip.ParseAddrPort(dialable(cfg.API.Listen[0]))
	if err != nil {
		return "", err
	}
	scheme := "http"
	if cfg.API.TLS == "files" || cfg.API.TLS == "acme" {
		scheme = "https"
	}
	return scheme + "://" + ap.String(), nil
}

// daemonClient talks to our own daemon. Over TLS it accepts exactly the
// certificate in api.cert_file: the daemon's name is not loopback's, and
// pinning our own file is stricter than any CA check.
func daemonClient(cfg *config.Config) (*http.Client, error) {
	tr := &http.Transport{Proxy: nil}
	if cfg.API.TLS == "files" || cfg.API.TLS == "acme" {
		certFile := servedCertFile(cfg)
		pemBytes, err := os.ReadFile(certFile)
		if err != nil {
			return nil, fmt.Errorf("read the API's certificate: %w", err)
		}
		block, _ := pem.Decode(pemBytes)
		if block == nil {
			return nil, fmt.Errorf("the API's certificate %s holds no PEM certificate", certFile)
		}
		want := block.Bytes
		tr.TLSClientConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by the pin below
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
					return fmt.Errorf("the daemon's certificate is not the one in %s", certFile)
				}
				if _, err := x509.ParseCertificate(want); err != nil {
					return err
				}
				return nil
			},
		}
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// syncDaemon asks a running daemon to republish the account's state.
func syncDaemon(ctx context.Context, cfg *config.Config, base string, c httpapi.Credentials) error {
	client, err := daemonClient(cfg)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	body, err := json.Marshal(map[string]string{"subdomain": c.Subdomain})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/sync", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Api-User", c.Username)
	req.Header.Set("X-Api-Key", c.Password)
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return errDaemonDown
		}
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /sync: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
