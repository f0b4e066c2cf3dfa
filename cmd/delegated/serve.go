package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/dnsserver"
	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/store"
)

// shutdownGrace is how long in-flight work may take once a signal came;
// the process exits within it.
const shutdownGrace = 4 * time.Second

// keyRefreshInterval is how often the DNS server rereads its DNSSEC keys
// and cookie secrets from the store: a rollover step reaches every instance
// within it, far inside the waits of the rollover timeline.
const keyRefreshInterval = 5 * time.Second

func serveCommand() command {
	c := command{
		Name:  "serve",
		Usage: "[--config FILE]",
		Short: "Run the DNS server and the HTTP API",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		path := fs.String("config", "config.toml", "configuration `file`")
		cfg, err := parseAndLoad(fs, args, path)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, newLogger(cfg.Log, stderr), nil)
	}
	return c
}

// loadConfig loads the file; any problem is exit status 2.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &exitError{code: 2, err: fmt.Errorf("%w (pass --config FILE, or run from the folder holding config.toml)", err)}
		}
		return nil, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

// serve runs until ctx ends. ready, when not nil, receives the bound DNS
// and API addresses once both serve (tests use it).
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(dnsAddrs, apiAddrs []string)) error {
	// Every outside input first: a bad one must stop the start before
	// the database is created or migrated.
	in, err := preflight(cfg)
	if err != nil {
		return err
	}
	var kek []byte
	if cfg.DNS.Updates == "tsig" {
		var err error
		if kek, err = store.LoadKEK(cfg.DNS.TSIGKEKFile, true); err != nil {
			// Serving DNS and the API matters more than updates: run
			// without keys (every UPDATE answers BADKEY) and say how
			// to fix it.
			log.Error("TSIG keys unusable: the key-encryption key could not be read or created; set [dns] tsig_kek_file to a writable place (or [dns] updates = \"off\")",
				"config", cfg.Path, "err", err)
		}
	}
	st, err := store.Open(ctx, cfg.Store.Driver, cfg.Store.DSN, store.Options{
		ValuesPerAccount: cfg.Values.PerAccount,
		ValueLifetime:    cfg.Values.Lifetime.Duration,
		Logger:           log,
		ConfirmAll:       cfg.Store.Confirm == "all",
		KEK:              kek,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store failed", "err", err)
		}
	}()

	// bcrypt runs on low-priority threads that each hold a P while they
	// compute. With one P, Go's scheduler would run the DNS readers only
	// between 10 ms slices of bcrypt (in bench/dns a wrong-key /update flood
	// took DNS p99 from 8 to 47 ms); with two, the kernel arbitrates, and it
	// runs a waking DNS reader ahead of a SCHED_IDLE bcrypt thread.
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	started := time.Now()
	view, unfollow, err := dnsserver.Follow(ctx, st, time.Now())
	if err != nil {
		return err
	}
	defer unfollow()
	log.Info("zone view loaded", "subdomains", view.Len(), "took", time.Since(started).Round(time.Millisecond))
	var updates *dnsserver.UpdateOptions
	if cfg.DNS.Updates == "tsig" {
		keys, unfollowKeys, err := dnsserver.FollowTSIGKeys(ctx, st)
		if err != nil {
			return err
		}
		defer unfollowKeys()
		log.Info("RFC 2136 updates on", "tsig_keys", keys.Len(), "kek_file", cfg.DNS.TSIGKEKFile)
		updates = &dnsserver.UpdateOptions{Store: st, Keys: keys, FailuresPerMinute: cfg.DNS.UpdateFailuresPerMinute}
	}

	z := cfg.Zone
	var dnssecKeys []store.DNSSECKey
	if z.DNSSEC {
		// The first start creates the key; every instance on a shared
		// PostgreSQL signs with the one the first created.
		if dnssecKeys, err = st.EnsureDNSSECKey(ctx, dnsserver.Algorithm, dnsserver.GenerateDNSSECKey); err != nil {
			return err
		}
	}
	dns, err := dnsserver.New(dnsserver.Options{
		Listen:            cfg.DNS.Listen,
		TCPIdleTimeout:    cfg.DNS.TCPIdleTimeout.Duration,
		MaxTCPConnections: cfg.DNS.MaxTCPConnections,
		RRLRate:           cfg.DNS.RRLRate,
		RRLSlip:           *cfg.DNS.RRLSlip,
		DNSSECKeys:        dnssecKeys,
		Logger:            log,
		Updates:           updates,
	}, dnsserver.ZoneConfig{
		Origin:     z.Domain,
		NSName:     z.NSName,
		NSAdmin:    z.NSAdmin,
		Records:    z.ParsedRecords,
		TXTTTL:     *z.TXTTTL,
		SOATTL:     *z.SOATTL,
		SOAMinimum: *z.SOAMinimum,
		NSTTL:      *z.DefaultTTL,
	}, view)
	if err != nil {
		return err
	}
	// DNSSEC keys (rollover steps) and cookie secrets (rotation) come from
	// the store, so that every instance signs and verifies alike.
	if err := dns.FollowKeys(ctx, st, keyRefreshInterval); err != nil {
		return err
	}
	if z.DNSSEC {
		log.Info("dnssec signing on", "keys", dnssecKeys)
	}
	apiOpts, stopAPIOptions, err := apiOptions(cfg, in, log, dns.Collector())
	if err != nil {
		return err
	}
	defer stopAPIOptions()
	// The issuer (off without [issuer]) and its operator API, which the
	// HTTP listener also serves when an operator token is configured.
	isvc, err := newIssuerService(cfg, in.issuer, st, log)
	if err != nil {
		return err
	}
	if err := isvc.wire(&apiOpts); err != nil {
		return err
	}
	// [api] tls = "acme": the API serves the issuer's certificate.
	apiTLS, err := newAPIACME(cfg, isvc, log, &apiOpts)
	if err != nil {
		return err
	}
	api, err := httpapi.New(apiOpts, st)
	if err != nil {
		return err
	}

	if err := dns.Start(); err != nil {
		return err
	}
	if err := api.Start(); err != nil {
		shutdown(log, dns)
		return err
	}
	if err := isvc.start(); err != nil {
		shutdown(log, api, dns)
		return err
	}
	if err := apiTLS.start(ctx); err != nil {
		shutdown(log, apiTLS, isvc, api, dns)
		return err
	}
	expiryCtx, stopExpiry := context.WithCancel(context.Background())
	expiryDone := make(chan struct{})
	go func() {
		defer close(expiryDone)
		st.RunExpiry(expiryCtx, time.Second)
	}()
	log.Info("delegated serving", "zone", z.Domain, "dns", dns.Addrs(), "api", api.Addrs(), "store", cfg.Store.Driver)
	hugePagesDone := make(chan struct{})
	go func() {
		// In the background: moving a million-name view takes about half
		// a second, and answers are correct meanwhile, only slower.
		defer close(hugePagesDone)
		started := time.Now()
		collapsed, err := adviseHugePages(ctx)
		if err != nil {
			log.Debug("huge pages: some memory not moved", "err", err)
		}
		if collapsed > 0 {
			log.Info("zone view moved to huge pages", "collapsed_mb", collapsed>>20, "took", time.Since(started).Round(time.Millisecond))
		}
	}()
	defer func() { <-hugePagesDone }()
	if ready != nil {
		ready(dns.Addrs(), api.Addrs())
	}

	<-ctx.Done()
	log.Info("shutting down")
	// The API goes first so no write is acknowledged that DNS would not
	// serve; the store closes last (deferred).
	shutdown(log, apiTLS, isvc, api, dns)
	stopExpiry()
	<-expiryDone
	log.Info("stopped")
	return nil
}

type shutdowner interface {
	Shutdown(ctx context.Context) error
}

func shutdown(log *slog.Logger, parts ...shutdowner) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, p := range parts {
		if err := p.Shutdown(ctx); err != nil {
			log.Warn("shutdown incomplete", "err", err)
		}
	}
}
