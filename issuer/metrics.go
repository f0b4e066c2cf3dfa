package issuer

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delegated/delegated/operator"
	"github.com/delegated/delegated/store"
)

var (
	certsDesc    = prometheus.NewDesc("delegated_certificates", "Certificates by status (the words of the CLI and logs).", []string{"status"}, nil)
	expiryDesc   = prometheus.NewDesc("delegated_certificate_expiry_timestamp_seconds", "NotAfter of each certificate's current material.", []string{"cert"}, nil)
	attemptsDesc = prometheus.NewDesc("delegated_certificate_failed_attempts", "Consecutive failed attempts of each certificate.", []string{"cert", "status"}, nil)
	queuedDesc   = prometheus.NewDesc("delegated_issuer_queue_depth", "Certificates waiting in each work pool (checks: delegation re-checks, orders: ACME attempts, plans: renewal planning).", []string{"queue"}, nil)
	runningDesc  = prometheus.NewDesc("delegated_issuer_queue_running", "Certificates being worked on in each work pool.", []string{"queue"}, nil)
	oldestDesc   = prometheus.NewDesc("delegated_issuer_oldest_due_seconds", "How long the longest-waiting due certificate has waited for its next action (0: nothing due).", nil, nil)
)

// Collector exports the issuer's figures, read at scrape time from the
// store's summary columns and the pools, so they never drift from what the
// CLI shows.
func (i *Issuer) Collector() prometheus.Collector { return collector{i} }

type collector struct{ i *Issuer }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{certsDesc, expiryDesc, attemptsDesc, queuedDesc, runningDesc, oldestDesc,
		caAttemptsDesc, caFailuresDesc, caSkipsDesc, caSkippedUntilDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	i := c.i
	if counts, err := i.store.CertificateCounts(ctx); err != nil {
		i.log.Warn("issuer metrics: count certificates", "err", err)
	} else {
		for _, st := range operator.Statuses {
			ch <- prometheus.MustNewConstMetric(certsDesc, prometheus.GaugeValue, float64(counts[string(st)]), string(st))
		}
	}
	if certs, err := i.store.CertificateSummaries(ctx, store.CertificateFilter{}); err != nil {
		i.log.Warn("issuer metrics: list certificates", "err", err)
	} else {
		for _, cert := range certs {
			if !cert.NotAfter.IsZero() {
				ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), cert.Name)
			}
			ch <- prometheus.MustNewConstMetric(attemptsDesc, prometheus.GaugeValue, float64(cert.Attempts), cert.Name, cert.Status)
		}
	}
	st := i.State(ctx)
	for name, n := range st.Queued {
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(n), name)
		ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(st.Running[name]), name)
	}
	now := i.opts.Now()
	if oldest, err := i.store.OldestDue(ctx, now); err == nil {
		age := 0.0
		if !oldest.IsZero() {
			age = now.Sub(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
	}
	i.collectCAs(st.CAs, ch)
}
