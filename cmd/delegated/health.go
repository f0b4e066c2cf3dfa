package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/config"
)

// healthCommand asks a running daemon whether it serves: GET /health on
// the API and the zone's SOA over DNS, both at the addresses the config
// names. It is the container's HEALTHCHECK (no curl in the image) and
// works for any supervisor.
func healthCommand() command {
	c := command{
		Name:  "health",
		Usage: "[--config FILE] [--url URL] [--timeout D]",
		Short: "Check that the running daemon answers /health and DNS; exit 1 when not",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		path := fs.String("config", "config.toml", "configuration `file` (locates the listeners)")
		base := fs.String("url", "", "API base `URL` (default: the first [api] listen address)")
		timeout := fs.Duration("timeout", 5*time.Second, "give up on each check after this `duration`")
		cfg, err := parseAndLoad(fs, args, path)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		apiErr := checkAPIHealth(ctx, cfg, *base, stdout)
		dnsErr := checkDNSHealth(ctx, cfg, stdout)
		return errors.Join(apiErr, dnsErr)
	}
	return c
}

// dialable turns a listen address into one to connect to: an unspecified
// address (0.0.0.0, ::) means this host's loopback. 127.0.0.1 serves both:
// Go listens on "[::]" with one dual-stack socket, and IPv6 (so ::1) may be
// off, as in containers on networks without it.
func dialable(listen string) string {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil || !ap.Addr().IsUnspecified() {
		return listen
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()).String()
}

func checkAPIHealth(ctx context.Context, cfg *config.Config, base string, stdout io.Writer) error {
	// Over TLS the client accepts exactly the certificate the daemon
	// serves (see daemonClient). Before tls = "acme" has its first
	// certificate there is no file to pin: the check is then of liveness
	// only, not of the certificate.
	client, err := daemonClient(cfg)
	if err != nil {
		client = &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	if base == "" {
		if base, err = daemonURL(cfg); err != nil {
			return err
		}
	}
	url := strings.TrimSuffix(base, "/") + "/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usageError("--url: %v", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("api %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	line := fmt.Sprintf("api %s: %s %s", url, resp.Status, printable(strings.TrimSpace(string(body))))
	if resp.StatusCode != http.StatusOK {
		return errors.New(line)
	}
	fmt.Fprintln(stdout, line)
	return nil
}

func checkDNSHealth(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	addr := dialable(cfg.DNS.Listen[0])
	m := new(dns.Msg)
	m.SetQuestion(cfg.Zone.Domain, dns.TypeSOA)
	c := &dns.Client{Net: "udp"}
	resp, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return fmt.Errorf("dns %s: SOA %s: %w", addr, cfg.Zone.Domain, err)
	}
	if resp.Rcode != dns.RcodeSuccess || !resp.Authoritative || len(resp.Answer) == 0 {
		return fmt.Errorf("dns %s: SOA %s: rcode %s, authoritative %t, %d answers; want an authoritative SOA", addr, cfg.Zone.Domain, dns.RcodeToString[resp.Rcode], resp.Authoritative, len(resp.Answer))
	}
	serial := uint32(0)
	if soa, ok := resp.Answer[0].(*dns.SOA); ok {
		serial = soa.Serial
	}
	fmt.Fprintf(stdout, "dns %s: SOA %s serial %d\n", addr, cfg.Zone.Domain, serial)
	return nil
}
