package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/dnsserver"
	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

// The rollover timeline (README "DNSSEC"): a combined signing key is
// replaced in three runs of `delegated dnssec rollover`, each allowed once
// the caches that could still hold the previous state have expired:
//
//  1. pre-publish: a new key joins the DNSKEY RRset (both keys sign it);
//     the old key still signs the zone.
//  2. switch, after DNSKEY TTL + margin: every resolver that has the
//     DNSKEY RRset has the new key. The new key signs the zone; the old
//     one still signs the DNSKEY RRset, so the parent's old DS keeps
//     validating while the new DS goes in (CDS/CDNSKEY now name the new
//     key only).
//  3. withdraw, after the longest TTL of the zone and of the parent's DS
//     (assumed a day): the old key leaves. Run it only once the parent
//     serves the new DS.
//
// rolloverMargin covers the instances' key refresh and clock skew.
const (
	rolloverMargin = 5 * time.Minute
	// parentDSTTL is the DS TTL assumed for the parent (a day is the
	// common value for TLDs; most are lower).
	parentDSTTL = 24 * time.Hour
)

func dnssecCommand() command {
	c := command{
		Name:  "dnssec",
		Usage: "ds|rollover [--config FILE] [--force] [--status]",
		Short: "Print the DS for the parent zone (ds) or advance a key rollover (rollover)",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		// The subcommand may come before or after the flags (the e2e
		// helpers put --config right after the verb).
		verb, rest := "", args
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			verb, rest = args[0], args[1:]
		}
		fs := newFlagSet(c, stderr)
		path := fs.String("config", "config.toml", "configuration `file`")
		force := fs.Bool("force", false, "rollover: take the next step without waiting out the timeline (unsafe on the internet)")
		status := fs.Bool("status", false, "rollover: print the keys and the next step, change nothing")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if verb == "" && fs.NArg() > 0 {
			verb = fs.Arg(0)
			if err := parseFlags(fs, fs.Args()[1:]); err != nil {
				return err
			}
		}
		if fs.NArg() > 0 {
			return usageError("unexpected argument %q", fs.Arg(0))
		}
		if verb != "ds" && verb != "rollover" {
			return usageError("expected a subcommand: ds or rollover, got %q", verb)
		}
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
		}
		if !cfg.Zone.DNSSEC {
			return &exitError{code: 2, err: fmt.Errorf("DNSSEC is off in %s: set [zone] dnssec = true first", cfg.Path)}
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		st, err := store.Open(ctx, cfg.Store.Driver, cfg.Store.DSN, store.Options{Logger: log})
		if err != nil {
			return err
		}
		defer st.Close()
		// Creating the key here is what the first start would do; it lets
		// the DS go to the parent before the server runs.
		keys, err := st.EnsureDNSSECKey(ctx, dnsserver.Algorithm, dnsserver.GenerateDNSSECKey)
		if err != nil {
			return err
		}
		if verb == "ds" {
			return printDS(stdout, cfg, keys)
		}
		return rollover(ctx, stdout, cfg, st, keys, time.Now(), *force, *status)
	}
	return c
}

// keyInfo is a stored key with its public DNSKEY.
type keyInfo struct {
	store.DNSSECKey
	dnskey *dns.DNSKEY
}

func describeKeys(cfg *config.Config, keys []store.DNSSECKey) ([]keyInfo, error) {
	out := make([]keyInfo, 0, len(keys))
	for _, k := range keys {
		dk, err := dnsserver.DNSKEY(cfg.Zone.Domain, *cfg.Zone.DefaultTTL, k)
		if err != nil {
			return nil, err
		}
		out = append(out, keyInfo{k, dk})
	}
	return out, nil
}

// printDS prints, for every key the parent should know (all but a retired
// one), the DS (SHA-256, digest type 2) and the DNSKEY.
func printDS(w io.Writer, cfg *config.Config, keys []store.DNSSECKey) error {
	infos, err := describeKeys(cfg, keys)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "; DS records for the parent of %s (add them at your registrar or parent zone)\n", cfg.Zone.Domain)
	for _, k := range infos {
		if k.State == store.KeyRetired {
			continue
		}
		fmt.Fprintf(w, "%s ; key %d, %s\n", k.dnskey.ToDS(dns.SHA256), k.dnskey.KeyTag(), k.State)
	}
	fmt.Fprintf(w, "; DNSKEY records (for registrars that take the key instead)\n")
	for _, k := range infos {
		if k.State == store.KeyRetired {
			continue
		}
		fmt.Fprintf(w, "%s ; key %d, %s\n", k.dnskey, k.dnskey.KeyTag(), k.State)
	}
	return nil
}

// rollover takes the next step of the timeline if its wait is over.
func rollover(ctx context.Context, w io.Writer, cfg *config.Config, st *store.Store, keys []store.DNSSECKey, now time.Time, force, status bool) error {
	infos, err := describeKeys(cfg, keys)
	if err != nil {
		return err
	}
	keyTTL := time.Duration(*cfg.Zone.DefaultTTL) * time.Second
	maxTTL := max(keyTTL, time.Duration(*cfg.Zone.SOATTL)*time.Second, time.Duration(*cfg.Zone.TXTTTL)*time.Second)
	for _, rr := range cfg.Zone.ParsedRecords {
		maxTTL = max(maxTTL, time.Duration(rr.Header().Ttl)*time.Second)
	}
	for _, k := range infos {
		fmt.Fprintf(w, "key %d: %s since %s\n", k.dnskey.KeyTag(), k.State, k.ChangedAt.UTC().Format(time.RFC3339))
	}
	// waitUntil refuses a step before its time unless forced.
	waitUntil := func(at time.Time, step string) error {
		if now.Before(at) && !force {
			return &exitError{code: 1, err: fmt.Errorf("too early to %s: caches may still hold the previous keys; run again after %s (or --force, unsafe on the internet)", step, at.UTC().Format(time.RFC3339))}
		}
		return nil
	}
	switch {
	case len(infos) == 1 && infos[0].State == store.KeyActive:
		if status {
			fmt.Fprintln(w, "next: step 1 of 3, pre-publish a new key (run without --status)")
			return nil
		}
		der, err := dnsserver.GenerateDNSSECKey()
		if err != nil {
			return err
		}
		if err := st.PrepublishDNSSECKey(ctx, dnsserver.Algorithm, der); err != nil {
			return err
		}
		fmt.Fprintf(w, "step 1 of 3 done: a new key is published beside key %d, which still signs the zone.\n", infos[0].dnskey.KeyTag())
		fmt.Fprintf(w, "next: after %s (DNSKEY TTL %s + %s), run `delegated dnssec rollover` again to switch.\n",
			now.Add(keyTTL+rolloverMargin).UTC().Format(time.RFC3339), keyTTL, rolloverMargin)
		return nil
	case len(infos) == 2 && infos[0].State == store.KeyActive && infos[1].State == store.KeyPublished:
		at := infos[1].ChangedAt.Add(keyTTL + rolloverMargin)
		if status {
			fmt.Fprintf(w, "next: step 2 of 3, switch to key %d, allowed after %s\n", infos[1].dnskey.KeyTag(), at.UTC().Format(time.RFC3339))
			return nil
		}
		if err := waitUntil(at, "switch keys"); err != nil {
			return err
		}
		if err := st.SwitchDNSSECKey(ctx); err != nil {
			return err
		}
		fmt.Fprintf(w, "step 2 of 3 done: key %d signs the zone; key %d still signs the DNSKEY set, so the DS at the parent keeps validating.\n",
			infos[1].dnskey.KeyTag(), infos[0].dnskey.KeyTag())
		fmt.Fprintf(w, "now: replace the DS at the parent with\n%s\n(parents that scan CDS/CDNSKEY pick it up by themselves)\n", infos[1].dnskey.ToDS(dns.SHA256))
		fmt.Fprintf(w, "next: once the parent serves the new DS, and not before %s (the parent's DS TTL, assumed %s, and the zone's longest TTL %s), run `delegated dnssec rollover` again to withdraw key %d.\n",
			now.Add(max(parentDSTTL, maxTTL)+rolloverMargin).UTC().Format(time.RFC3339), parentDSTTL, maxTTL, infos[0].dnskey.KeyTag())
		return nil
	case len(infos) == 2 && infos[0].State == store.KeyRetired && infos[1].State == store.KeyActive:
		at := infos[1].ChangedAt.Add(max(parentDSTTL, maxTTL) + rolloverMargin)
		if status {
			fmt.Fprintf(w, "next: step 3 of 3, withdraw key %d once the parent serves only the new DS, allowed after %s\n", infos[0].dnskey.KeyTag(), at.UTC().Format(time.RFC3339))
			return nil
		}
		if err := waitUntil(at, "withdraw the old key"); err != nil {
			return err
		}
		if err := st.WithdrawDNSSECKey(ctx); err != nil {
			return err
		}
		fmt.Fprintf(w, "step 3 of 3 done: key %d is withdrawn; key %d alone signs the zone. The rollover is complete.\n",
			infos[0].dnskey.KeyTag(), infos[1].dnskey.KeyTag())
		return nil
	}
	return errors.New("the stored keys are in no state of the rollover timeline; see the key list above")
}
