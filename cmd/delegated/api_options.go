package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/httpapi"
)

// registrationTokenEnv is the alternative to [api] registration_token_file.
const registrationTokenEnv = "DELEGATED_REGISTRATION_TOKEN"

// apiOptions turns [api] into httpapi.Options: it reads the registration
// token (file or environment, once, at start), builds the metrics registry
// and forwards SIGHUP to the certificate reloader. stop undoes the signal
// subscription.
func apiOptions(cfg *config.Config, log *slog.Logger, dnsMetrics prometheus.Collector) (opts httpapi.Options, stop func(), err error) {
	a := cfg.API
	mode, err := httpapi.ParseRegistrationMode(a.Registration)
	if err != nil {
		return opts, nil, &exitError{code: 2, err: err}
	}
	token, err := registrationToken(a)
	if err != nil {
		return opts, nil, err
	}
	if mode == httpapi.RegistrationToken && token == "" {
		return opts, nil, &exitError{code: 2, err: fmt.Errorf("%s: api.registration_token_file: api.registration = \"token\" needs a token: set api.registration_token_file or the environment variable %s", cfg.Path, registrationTokenEnv)}
	}
	opts = httpapi.Options{
		Zone:              cfg.Zone.Domain,
		Listen:            a.Listen,
		BcryptCost:        a.BcryptCost,
		Logger:            log,
		Registration:      mode,
		RegistrationToken: token,
		TrustedProxies:    a.TrustedProxyPrefixes,
	}
	if a.RegisterRate != "" {
		opts.RegisterRate, opts.RegisterPer, err = config.ParseRate(a.RegisterRate)
		if err != nil {
			return opts, nil, &exitError{code: 2, err: fmt.Errorf("%s: api.register_rate: %w", cfg.Path, err)}
		}
	}
	if *a.Metrics {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if dnsMetrics != nil {
			reg.MustRegister(dnsMetrics)
		}
		opts.Metrics = reg
	}
	stop = func() {}
	if a.TLS == "files" {
		opts.TLSCertFile, opts.TLSKeyFile = a.CertFile, a.KeyFile
		hup := make(chan os.Signal, 1)
		reload := make(chan struct{}, 1)
		signal.Notify(hup, syscall.SIGHUP)
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-done:
					return
				case <-hup:
					select {
					case reload <- struct{}{}:
					default: // a reload is already pending
					}
				}
			}
		}()
		opts.TLSReload = reload
		stop = func() {
			signal.Stop(hup)
			close(done)
		}
	}
	return opts, stop, nil
}

// registrationToken reads the token from the file, else the environment.
func registrationToken(a config.API) (string, error) {
	if a.RegistrationTokenFile != "" {
		b, err := os.ReadFile(a.RegistrationTokenFile)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", &exitError{code: 2, err: fmt.Errorf("api.registration_token_file: %w", err)}
			}
			return "", fmt.Errorf("api.registration_token_file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", &exitError{code: 2, err: fmt.Errorf("api.registration_token_file: %s is empty", a.RegistrationTokenFile)}
		}
		return tok, nil
	}
	return strings.TrimSpace(os.Getenv(registrationTokenEnv)), nil
}
