package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/issuer"
)

// apiCertName is the managed certificate of [api] tls = "acme".
const apiCertName = "delegated-api"

// apiACME is the API's own certificate ([api] tls = "acme"): the bundled
// issuer obtains it through our own zone (_acme-challenge.<zone> is a label
// of the zone, see issuer/self.go) and renews it with every other
// certificate; the API serves the deployed files. Until the first issuance
// the API serves a self-signed placeholder (httpapi.Options.TLSPlaceholder)
// rather than refusing connections: the listener, health checks with -k
// and the plain-text logs say what is going on, and no restart is needed
// once the certificate exists. A nil *apiACME (tls is not "acme") does
// nothing.
type apiACME struct {
	iss     *issuer.Issuer
	domains []string
	log     *slog.Logger
	reload  chan struct{}
	unsub   func()
	cancel  context.CancelFunc
	done    chan struct{}
}

// newAPIACME points opts at the deployed files of apiCertName and returns
// the piece that requests the certificate and reloads it on each deploy.
func newAPIACME(cfg *config.Config, isvc *issuerService, log *slog.Logger, opts *httpapi.Options) (*apiACME, error) {
	if cfg.API.TLS != "acme" {
		return nil, nil
	}
	if isvc == nil {
		// config.Load refuses this; a Config built otherwise must too.
		return nil, &exitError{code: 2, err: errors.New("api.tls: \"acme\" needs the bundled issuer; add an [issuer] section")}
	}
	p := isvc.iss.PathsFor(apiCertName)
	a := &apiACME{iss: isvc.iss, domains: cfg.API.ACMEDomains, log: log.With("component", "api-tls"), reload: make(chan struct{})}
	opts.TLSCertFile, opts.TLSKeyFile = p.FullChain, p.PrivKey
	opts.TLSPlaceholder = a.domains
	opts.TLSReload = a.reload
	return a, nil
}

// start subscribes to the certificate's events, then registers it when it
// is absent or its domains changed (an existing one is renewed by the
// issuer's scheduler like any other). Each deploy reloads the served
// certificate at once; the reloader's file check would find it too, later.
func (a *apiACME) start(ctx context.Context) error {
	if a == nil {
		return nil
	}
	events, unsub := a.iss.Subscribe(apiCertName)
	// SIGHUP reloads too, as with tls = "files" (the files may have been
	// put back by hand).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	runCtx, cancel := context.WithCancel(context.Background())
	a.unsub = func() {
		unsub()
		signal.Stop(hup)
	}
	a.cancel, a.done = cancel, make(chan struct{})
	go func() {
		defer close(a.done)
		for {
			why := ""
			select {
			case <-runCtx.Done():
				return
			case <-hup:
				why = "SIGHUP; reloading the API certificate"
			case ev := <-events:
				if ev.Step != issuer.StepDeployed || !ev.OK {
					continue
				}
				why = "API certificate deployed; reloading it"
			}
			select {
			case a.reload <- struct{}{}:
				a.log.Info(why, "cert", apiCertName)
			case <-runCtx.Done():
				return
			}
		}
	}()

	c, err := a.iss.Certificate(ctx, apiCertName)
	switch {
	case err == nil && slices.Equal(c.Domains, a.domains):
		a.log.Info("API certificate managed by the issuer", "cert", apiCertName, "domains", a.domains, "status", c.Status, "not_after", c.NotAfter)
		return nil
	case err != nil && !errors.Is(err, issuer.ErrNotFound):
		return fmt.Errorf("api.tls: look up certificate %s: %w", apiCertName, err)
	}
	// dns-01 whatever [issuer] challenge says: the zone's own name is
	// answered by the zone itself, which only dns-01 reads.
	v, err := a.iss.Issue(ctx, issuer.Request{Name: apiCertName, Domains: a.domains, Challenge: issuer.ChallengeDNS01})
	if err != nil {
		return fmt.Errorf("api.tls: request certificate %s for %v: %w", apiCertName, a.domains, err)
	}
	a.log.Info("API certificate requested", "cert", apiCertName, "domains", a.domains, "status", v.Status)
	return nil
}

// Shutdown stops the reload forwarding.
func (a *apiACME) Shutdown(ctx context.Context) error {
	if a == nil || a.cancel == nil {
		return nil
	}
	a.unsub()
	a.cancel()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("api tls: %w", ctx.Err())
	}
}

// servedCertFile is the certificate file the API serves over TLS, which
// the CLI pins when it calls its own daemon: api.cert_file, or for
// tls = "acme" the deployed API certificate (before the first issuance the
// daemon serves a placeholder and the pin fails, with a warning).
func servedCertFile(cfg *config.Config) string {
	if cfg.API.TLS == "acme" && cfg.Issuer != nil {
		return issuer.DeployedPaths(cfg.Issuer.DeployDir, apiCertName).FullChain
	}
	return cfg.API.CertFile
}
