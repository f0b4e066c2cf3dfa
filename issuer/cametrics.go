package issuer

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delegated/delegated/operator"
)

// caStats counts what this process asked of one CA.
type caStats struct {
	mu       sync.Mutex
	attempts int64
	failures map[string]int64
	skips    map[string]int64
}

func (s *caStats) attempt() {
	s.mu.Lock()
	s.attempts++
	s.mu.Unlock()
}

func (s *caStats) fail(kind string) {
	s.mu.Lock()
	if s.failures == nil {
		s.failures = map[string]int64{}
	}
	s.failures[kind]++
	s.mu.Unlock()
}

func (s *caStats) skip(reason string) {
	s.mu.Lock()
	if s.skips == nil {
		s.skips = map[string]int64{}
	}
	s.skips[reason]++
	s.mu.Unlock()
}

func (s *caStats) snapshot() (attempts int64, failures, skips map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	failures, skips = map[string]int64{}, map[string]int64{}
	for k, v := range s.failures {
		failures[k] = v
	}
	for k, v := range s.skips {
		skips[k] = v
	}
	return s.attempts, failures, skips
}

var (
	caAttemptsDesc = prometheus.NewDesc("delegated_issuer_ca_attempts_total",
		"Orders this instance started at each CA (a directory fetch that failed counts too).", []string{"ca"}, nil)
	caFailuresDesc = prometheus.NewDesc("delegated_issuer_ca_failures_total",
		"Failed orders at each CA by kind: unreachable, server_error, rate_limited, bad_nonce, timeout, tls (the CA's side: the attempt moved on to the next CA), or the ACME problem type of a verdict about the request.",
		[]string{"ca", "kind"}, nil)
	caSkipsDesc = prometheus.NewDesc("delegated_issuer_ca_skips_total",
		"Times a CA was passed over for a certificate: paused (rate limited or down) or caa (the customer's CAA records forbid it).", []string{"ca", "reason"}, nil)
	caSkippedUntilDesc = prometheus.NewDesc("delegated_issuer_ca_skipped_until_timestamp_seconds",
		"Until when each CA is skipped for all certificates (shared by all instances on the database); 0 when it is in service.", []string{"ca"}, nil)
)

// collectCAs exports the per-CA figures: this process's counters and the
// pauses every instance shares (cas, from the store).
func (i *Issuer) collectCAs(cas []operator.CAState, ch chan<- prometheus.Metric) {
	for k, ca := range i.cas {
		attempts, failures, skips := ca.stats.snapshot()
		ch <- prometheus.MustNewConstMetric(caAttemptsDesc, prometheus.CounterValue, float64(attempts), ca.Name)
		for kind, n := range failures {
			ch <- prometheus.MustNewConstMetric(caFailuresDesc, prometheus.CounterValue, float64(n), ca.Name, kind)
		}
		for reason, n := range skips {
			ch <- prometheus.MustNewConstMetric(caSkipsDesc, prometheus.CounterValue, float64(n), ca.Name, reason)
		}
		until := 0.0
		if k < len(cas) && !cas[k].PausedUntil.IsZero() {
			until = float64(cas[k].PausedUntil.Unix())
		}
		ch <- prometheus.MustNewConstMetric(caSkippedUntilDesc, prometheus.GaugeValue, until, ca.Name)
	}
}
