package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

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
		Zone:                cfg.Zone.Domain,
		CAs:                 in.cas,
		CABackoff:           ic.CABackoff.Duration,
		Challenge:           ic.Challenge,
		Profile:             ic.Profile,
		Resolvers:           in.resolvers,
		SkipAuthoritative:   !*ic.CheckAuthoritative,
		AuthoritativePort:   strconv.Itoa(ic.AuthoritativePort),
		DeployDir:           ic.DeployDir,
		DeployHook:          ic.DeployHook,
		DelegationRecheck:   ic.DelegationRecheck.Duration,
		RetryInterval:       ic.RetryInterval.Duration,
		RetryAttempts:       ic.RetryAttempts,
		RenewBefore:         ic.RenewBefore.Duration,
		CheckWorkers:        ic.MaxConcurrentChecks,
		MaxConcurrentOrders: ic.MaxConcurrentOrders,
		OrdersPerHour:       ic.OrdersPerHour,
		// One name per process: the store's heartbeats and the issuer's
		// leases say the same instance.
		InstanceID: st.InstanceID(),
		Logger:     log,
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
	s.op = httpapi.NewOperator(opOpts, iss)
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
		if err := opts.Metrics.Register(s.iss.Collector()); err != nil {
			return fmt.Errorf("issuer metrics: %w", err)
		}
	}
	return nil
}
