package main

import (
	"log/slog"
	"os"
	"os/signal"
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
func apiOptions(cfg *config.Config, in startInputs, log *slog.Logger, dnsMetrics prometheus.Collector) (opts httpapi.Options, stop func(), err error) {
	a := cfg.API
	// config.Load checked the word; this maps it to the API's type.
	mode := httpapi.RegistrationOpen
	switch a.Registration {
	case config.RegistrationToken:
		mode = httpapi.RegistrationToken
	case config.RegistrationClosed:
		mode = httpapi.RegistrationClosed
	}
	opts = httpapi.Options{
		Zone:              cfg.Zone.Domain,
		Listen:            a.Listen,
		BcryptCost:        a.BcryptCost,
		Logger:            log,
		Registration:      mode,
		RegistrationToken: in.registrationToken,
		TrustedProxies:    a.TrustedProxyPrefixes,
		RegisterRate:      a.RegisterRateN,
		RegisterPer:       a.RegisterRatePer,
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
