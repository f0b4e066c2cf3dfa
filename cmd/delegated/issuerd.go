package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/console"
	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/issuer"
	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// Environment variables holding issuer secrets, the alternative to files.
const (
	envEABHMAC       = "DELEGATED_EAB_HMAC"
	envOperatorToken = "DELEGATED_OPERATOR_TOKEN"
)

// issuerService is the daemon's issuer with its operator API. A nil
// *issuerService (no [issuer] section) does nothing.
type issuerService struct {
	iss    *issuer.Issuer
	op     *httpapi.Operator
	token  string
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	// console is the operator console; nil without a token.
	console *console.Console
}

// newIssuerService builds the issuer from cfg.Issuer and the inputs
// preflight read; nil when absent.
func newIssuerService(cfg *config.Config, in *issuerInputs, st *store.Store, log *slog.Logger) (*issuerService, error) {
	ic := cfg.Issuer
	if ic == nil || in == nil {
		return nil, nil
	}
	iss, err := issuer.New(issuer.Options{
		Zone:              cfg.Zone.Domain,
		Directory:         ic.Directory,
		Email:             ic.Email,
		CARoots:           in.roots,
		KeyType:           ic.KeyType,
		EABKID:            ic.EABKID,
		EABHMAC:           in.eabHMAC,
		PreferredChain:    ic.PreferredChain,
		Resolvers:         in.resolvers,
		SkipAuthoritative: !*ic.CheckAuthoritative,
		AuthoritativePort: strconv.Itoa(ic.AuthoritativePort),
		DeployDir:         ic.DeployDir,
		DeployHook:        ic.DeployHook,
		DelegationRecheck: ic.DelegationRecheck.Duration,
		RetryInterval:     ic.RetryInterval.Duration,
		RetryAttempts:     ic.RetryAttempts,
		RenewBefore:       ic.RenewBefore.Duration,
		Logger:            log,
	}, st, providers.NewLocal(st))
	if err != nil {
		return nil, err
	}
	token := in.operatorToken
	s := &issuerService{iss: iss, token: token, log: log}
	opOpts := httpapi.OperatorOptions{Socket: ic.OperatorSocket, Token: token, Logger: log}
	if token != "" {
		// The console logs in with the operator token; its sessions are
		// the operator API's other credential.
		s.console, err = console.New(console.Options{Token: token, ClientSource: httpapi.ClientSourceFunc(cfg.API.TrustedProxyPrefixes), Logger: log})
		if err != nil {
			return nil, err
		}
		opOpts.Session = s.console.Authorized
	}
	s.op = httpapi.NewOperator(opOpts, issuerAdapter{iss})
	return s, nil
}

// tokenHandler is the operator API for the HTTP listener, or nil when no
// token is configured (then it is served on the socket only).
func (s *issuerService) tokenHandler() http.Handler {
	if s == nil || s.token == "" {
		return nil
	}
	return s.op.TokenHandler()
}

// start opens the operator socket and runs the scheduler.
func (s *issuerService) start() error {
	if s == nil {
		return nil
	}
	if err := s.op.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.iss.Run(ctx)
	}()
	return nil
}

// Shutdown closes the operator API, then stops the scheduler and waits for
// running attempts (their store writes must land before the store closes).
func (s *issuerService) Shutdown(ctx context.Context) error {
	if s == nil || s.cancel == nil {
		return nil
	}
	err := s.op.Shutdown(ctx)
	s.cancel()
	select {
	case <-s.done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("issuer: %w", ctx.Err()))
	}
	return err
}

// issuerAdapter presents the issuer to the operator API, which declares its
// own interface and error kinds.
type issuerAdapter struct{ iss *issuer.Issuer }

var _ httpapi.Issuer = issuerAdapter{}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, issuer.ErrNotFound):
		return fmt.Errorf("%w: %w", httpapi.ErrOperatorNotFound, err)
	case errors.Is(err, issuer.ErrInvalid):
		return fmt.Errorf("%w: %w", httpapi.ErrOperatorInvalid, err)
	}
	return err
}

func (a issuerAdapter) Issue(ctx context.Context, name string, domains []string) (any, bool, error) {
	c, err := a.iss.Issue(ctx, issuer.Request{Name: name, Domains: domains})
	return c, err == nil && c.Status == issuer.StatusProcessing, mapErr(err)
}

func (a issuerAdapter) Retry(ctx context.Context, name string) (any, bool, error) {
	c, err := a.iss.Retry(ctx, name)
	return c, err == nil && c.Status == issuer.StatusProcessing, mapErr(err)
}

func (a issuerAdapter) Renew(ctx context.Context, name string, force bool) (any, bool, error) {
	c, started, err := a.iss.Renew(ctx, name, force)
	return c, started, mapErr(err)
}

func (a issuerAdapter) RenewDue(ctx context.Context, force bool) (any, error) {
	names, err := a.iss.RenewDue(ctx, force)
	return map[string][]string{"started": names}, mapErr(err)
}

func (a issuerAdapter) Certificates(ctx context.Context) (any, error) {
	c, err := a.iss.Certificates(ctx)
	return c, mapErr(err)
}

func (a issuerAdapter) Certificate(ctx context.Context, name string) (any, error) {
	c, err := a.iss.Certificate(ctx, name)
	return c, mapErr(err)
}

func (a issuerAdapter) Delegation(ctx context.Context, name string) (any, error) {
	c, err := a.iss.Delegation(ctx, name)
	return c, mapErr(err)
}

func (a issuerAdapter) Revoke(ctx context.Context, name, reason string) (any, error) {
	c, err := a.iss.Revoke(ctx, name, reason)
	return c, mapErr(err)
}

func (a issuerAdapter) Delete(ctx context.Context, name string) error {
	return mapErr(a.iss.Delete(ctx, name))
}

func (a issuerAdapter) Watch(name string) (<-chan httpapi.OperatorEvent, func()) {
	events, cancel := a.iss.Subscribe(name)
	out := make(chan httpapi.OperatorEvent, 64)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case ev := <-events:
				select {
				case out <- httpapi.OperatorEvent{Body: ev, Final: ev.Step == issuer.StepDone}:
				case <-stop:
					return
				}
			}
		}
	}()
	return out, func() {
		cancel()
		close(stop)
	}
}

// wire mounts the operator API on the HTTP listener (when a token is
// configured) and exports the issuer's metrics on the API's registry.
func (s *issuerService) wire(opts *httpapi.Options) error {
	if s == nil {
		return nil
	}
	opts.Operator = s.tokenHandler()
	if s.console != nil {
		opts.Console = s.console.Handler()
	}
	if opts.Metrics != nil {
		if err := opts.Metrics.Register(certCollector{iss: s.iss, log: s.log}); err != nil {
			return fmt.Errorf("issuer metrics: %w", err)
		}
	}
	return nil
}

var (
	certsDesc    = prometheus.NewDesc("delegated_certificates", "Certificates by status (the words of the CLI and logs).", []string{"status"}, nil)
	expiryDesc   = prometheus.NewDesc("delegated_certificate_expiry_timestamp_seconds", "NotAfter of each certificate's current material.", []string{"cert"}, nil)
	attemptsDesc = prometheus.NewDesc("delegated_certificate_failed_attempts", "Consecutive failed attempts of each certificate.", []string{"cert", "status"}, nil)
)

// certCollector reads the certificates from the store at scrape time, so
// the figures can never drift from what the CLI shows.
type certCollector struct {
	iss *issuer.Issuer
	log *slog.Logger
}

func (c certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certsDesc
	ch <- expiryDesc
	ch <- attemptsDesc
}

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	certs, err := c.iss.Certificates(ctx)
	if err != nil {
		c.log.Warn("issuer metrics: list certificates", "err", err)
		return
	}
	counts := map[issuer.Status]int{
		issuer.StatusPendingDelegation: 0, issuer.StatusProcessing: 0, issuer.StatusActive: 0,
		issuer.StatusFailed: 0, issuer.StatusRevoked: 0,
	}
	for _, cert := range certs {
		counts[cert.Status]++
		if !cert.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), cert.Name)
		}
		ch <- prometheus.MustNewConstMetric(attemptsDesc, prometheus.GaugeValue, float64(cert.Attempts), cert.Name, string(cert.Status))
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(certsDesc, prometheus.GaugeValue, float64(n), string(st))
	}
}
