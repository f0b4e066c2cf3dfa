package dnsserver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the server's counters to Prometheus:
// delegated_dns_queries_total{qtype,rcode} and, with updates on,
// delegated_dns_updates_total{result}. The counts are atomic adds on the
// answer path; they are read only when Prometheus scrapes.
func (s *Server) Collector() prometheus.Collector {
	return &collector{s: s,
		queries: prometheus.NewDesc("delegated_dns_queries_total",
			"DNS queries answered, by query type and response code.",
			[]string{"qtype", "rcode"}, nil),
		updates: prometheus.NewDesc("delegated_dns_updates_total",
			"RFC 2136 UPDATE requests, by result (applied, prerequisite_failed, refused, unsigned, badkey, badsig, badtime, badtrunc, notauth, notzone, formerr, rate_limited, servfail, busy).",
			[]string{"result"}, nil),
	}
}

type collector struct {
	s                *Server
	queries, updates *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queries
	ch <- c.updates
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.s.QueryCounts(func(qtype, rcode string, n uint64) {
		ch <- prometheus.MustNewConstMetric(c.queries, prometheus.CounterValue, float64(n), qtype, rcode)
	})
	c.s.UpdateCounts(func(result string, n uint64) {
		ch <- prometheus.MustNewConstMetric(c.updates, prometheus.CounterValue, float64(n), result)
	})
}
