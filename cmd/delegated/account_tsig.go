package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/store"
)

// tsigFlags are the TSIG key settings of `account add --tsig` (prefixed
// "tsig-") and `account tsig`.
type tsigFlags struct {
	algorithm  string
	name       string
	freeTXT    bool
	nameserver string
}

func (f *tsigFlags) register(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&f.algorithm, prefix+"algorithm", "hmac-sha256", "TSIG `algorithm`: hmac-sha256 or hmac-sha512")
	fs.StringVar(&f.name, prefix+"name", "", "the key's `name` (default <subdomain>.<zone>.)")
	fs.BoolVar(&f.freeTXT, "free-txt", false, "let the key write any TXT value up to 255 bytes, not only ACME challenge values")
	fs.StringVar(&f.nameserver, "nameserver", "", "the DNS server's public `host:port` printed for clients (default: zone nsname, port of the first dns.listen)")
}

// set reports whether any of the flags was given.
func (f *tsigFlags) set(fs *flag.FlagSet, prefix string) bool {
	given := false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case prefix + "algorithm", prefix + "name", "free-txt", "nameserver":
			given = true
		}
	})
	return given
}

// newKey makes a key with a fresh 32-byte secret for subdomain.
func (f *tsigFlags) newKey(cfg *config.Config, subdomain string) (store.TSIGKey, error) {
	k := store.TSIGKey{Subdomain: subdomain, FreeTXT: f.freeTXT}
	switch strings.TrimSuffix(strings.ToLower(f.algorithm), ".") {
	case "hmac-sha256", "":
		k.Algorithm = store.HMACSHA256
	case "hmac-sha512":
		k.Algorithm = store.HMACSHA512
	default:
		return k, usageError("algorithm %q: expected hmac-sha256 or hmac-sha512", f.algorithm)
	}
	k.Name = strings.ToLower(dns.Fqdn(strings.TrimSpace(f.name)))
	if f.name == "" {
		k.Name = subdomain + "." + strings.ToLower(dns.Fqdn(cfg.Zone.Domain))
	}
	if _, ok := dns.IsDomainName(k.Name); !ok || k.Name == "." {
		return k, usageError("key name %q is not a domain name", f.name)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return k, fmt.Errorf("generate TSIG secret: %w", err)
	}
	k.Secret = secret
	return k, nil
}

// accountTSIGRun is `account tsig`: add, replace or remove the TSIG key of
// an existing account.
func accountTSIGRun(ctx context.Context, c command, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(c, stderr)
	path := fs.String("config", "config.toml", "configuration `file`")
	username := fs.String("username", "", "the account's `username` (from /register or account add)")
	domain := fs.String("domain", "", "the customer's `name` (e.g. example.com), for the CNAME line")
	remove := fs.Bool("remove", false, "remove the account's key: updates signed with it are refused (BADKEY) from then on")
	var kf tsigFlags
	kf.register(fs, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	if *username == "" {
		return usageError("account tsig needs --username")
	}
	if *remove && kf.set(fs, "") {
		return usageError("--remove takes no key settings")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, stderr, true)
	if err != nil {
		return err
	}
	defer st.Close()
	acct, err := st.AccountByUsername(ctx, strings.ToLower(strings.TrimSpace(*username)))
	if errors.Is(err, store.ErrNotFound) {
		return &exitError{code: 1, err: fmt.Errorf("no account with username %q", *username)}
	}
	if err != nil {
		return err
	}
	if *remove {
		err := st.RemoveTSIGKey(ctx, acct.Subdomain)
		if errors.Is(err, store.ErrNotFound) {
			return &exitError{code: 1, err: fmt.Errorf("account %s has no TSIG key", acct.Username)}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "TSIG key of account %s removed\n", acct.Username)
		return nil
	}
	key, err := kf.newKey(cfg, acct.Subdomain)
	if err != nil {
		return err
	}
	if err := st.SetTSIGKey(ctx, key); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return usageError("key name %s is another account's: choose another --name", key.Name)
		}
		return err
	}
	return printTSIGKey(stdout, cfg, key, *domain, kf.nameserver, true)
}

// printTSIGKey shows the key the way each client reads it: BIND's key
// clause (nsupdate -k FILE, named.conf), the environment of lego and
// Traefik's rfc2136 provider, and the CNAME the customer creates. The
// secret is printed here once; the store keeps it sealed.
func printTSIGKey(w io.Writer, cfg *config.Config, k store.TSIGKey, domain, nameserver string, withCNAME bool) error {
	domain = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), "."), "*.")
	if domain == "" {
		domain = "<domain>"
	}
	if nameserver == "" {
		nameserver = defaultNameserver(cfg)
	}
	secret := base64.StdEncoding.EncodeToString(k.Secret)
	alg := strings.TrimSuffix(k.Algorithm, ".")
	fqdn := k.Subdomain + "." + strings.ToLower(dns.Fqdn(cfg.Zone.Domain))
	var b bytes.Buffer
	fmt.Fprintf(&b, "# TSIG key for RFC 2136 updates of %s TXT (nsupdate -k FILE; BIND key clause)\n", fqdn)
	fmt.Fprintf(&b, "key \"%s\" {\n\talgorithm %s;\n\tsecret \"%s\";\n};\n", k.Name, alg, secret)
	fmt.Fprintf(&b, "# lego / Traefik --dns rfc2136 environment\n")
	fmt.Fprintf(&b, "RFC2136_NAMESERVER=%s\nRFC2136_TSIG_KEY=%s\nRFC2136_TSIG_SECRET=%s\nRFC2136_TSIG_ALGORITHM=%s\n", nameserver, k.Name, secret, k.Algorithm)
	if withCNAME {
		fmt.Fprintf(&b, "# CNAME to create in the customer's zone\n_acme-challenge.%s. CNAME %s\n", domain, fqdn)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// defaultNameserver is the zone's name server with the port of the first
// DNS listener: what a client outside reaches.
func defaultNameserver(cfg *config.Config) string {
	host := strings.TrimSuffix(cfg.Zone.NSName, ".")
	port := "53"
	if len(cfg.DNS.Listen) > 0 {
		if ap, err := netip.ParseAddrPort(cfg.DNS.Listen[0]); err == nil {
			port = fmt.Sprint(ap.Port())
		}
	}
	return net.JoinHostPort(host, port)
}
