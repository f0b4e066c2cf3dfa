package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/delegated/delegated/store"
)

// accountCounter and valueCounter are optional Store methods, found by type
// assertion: a store that has them gets the delegated_accounts and
// delegated_values_stored gauges.
type accountCounter interface {
	CountAccounts(ctx context.Context) (int, error)
}

type valueCounter interface {
	CountValues(ctx context.Context) (int, error)
}

// storeOps are the store calls whose latency is recorded.
var storeOps = []string{"create_account", "account_by_username", "delete_account", "add_value", "remove_value", "clear_values", "republish", "ping"}

type apiMetrics struct {
	requests     *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	storeSeconds map[string]prometheus.Observer
}

func newAPIMetrics(reg prometheus.Registerer, st Store) (*apiMetrics, error) {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "delegated_api_requests_total",
			Help: "HTTP API requests by route and status code.",
		}, []string{"route", "status"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "delegated_api_auth_failures_total",
			Help: "HTTP API requests refused with 401 (bad credentials, source not allowed, wrong subdomain, bad registration token) by route.",
		}, []string{"route"}),
		storeSeconds: map[string]prometheus.Observer{},
	}
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "delegated_store_seconds",
		Help:    "Latency of store calls made by the HTTP API, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
	for _, op := range storeOps {
		m.storeSeconds[op] = latency.WithLabelValues(op)
	}
	cs := []prometheus.Collector{m.requests, m.authFailures, latency}
	if sc := newStoreCollector(st); sc != nil {
		cs = append(cs, sc)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("httpapi: register metrics: %w", err)
		}
	}
	return m, nil
}

// handler serves reg in the Prometheus text format. A failing collector
// (the store is down) drops its own metrics, not the whole scrape.
func (m *apiMetrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// instrument counts h's requests by route and status.
func (m *apiMetrics) instrument(route string, h httprouter.Handle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r, p)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		if status == http.StatusUnauthorized {
			m.authFailures.WithLabelValues(route).Inc()
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// storeCollector reads the store's gauges at scrape time.
type storeCollector struct {
	accounts accountCounter
	values   valueCounter
	accDesc  *prometheus.Desc
	valDesc  *prometheus.Desc
}

func newStoreCollector(st Store) prometheus.Collector {
	c := &storeCollector{
		accDesc: prometheus.NewDesc("delegated_accounts", "Registered accounts in the store.", nil, nil),
		valDesc: prometheus.NewDesc("delegated_values_stored", "Live TXT values in the store.", nil, nil),
	}
	c.accounts, _ = st.(accountCounter)
	c.values, _ = st.(valueCounter)
	if c.accounts == nil && c.values == nil {
		return nil
	}
	return c
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.accounts != nil {
		ch <- c.accDesc
	}
	if c.values != nil {
		ch <- c.valDesc
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gauge := func(desc *prometheus.Desc, count func(context.Context) (int, error)) {
		n, err := count(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(desc, err)
			return
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n))
	}
	if c.accounts != nil {
		gauge(c.accDesc, c.accounts.CountAccounts)
	}
	if c.values != nil {
		gauge(c.valDesc, c.values.CountValues)
	}
}

// timedStore records the latency of every store call the API makes.
type timedStore struct {
	Store
	seconds map[string]prometheus.Observer
}

// instrumentStore wraps st. The wrapper hides st's optional methods, which
// is why newStoreCollector looks for them on st itself.
func instrumentStore(st Store, m *apiMetrics) Store {
	return &timedStore{Store: st, seconds: m.storeSeconds}
}

func (s *timedStore) observe(op string, start time.Time) {
	s.seconds[op].Observe(time.Since(start).Seconds())
}

func (s *timedStore) CreateAccount(ctx context.Context, a store.Account) error {
	defer s.observe("create_account", time.Now())
	return s.Store.CreateAccount(ctx, a)
}

func (s *timedStore) AccountByUsername(ctx context.Context, username string) (store.Account, error) {
	defer s.observe("account_by_username", time.Now())
	return s.Store.AccountByUsername(ctx, username)
}

func (s *timedStore) DeleteAccount(ctx context.Context, username string) error {
	defer s.observe("delete_account", time.Now())
	return s.Store.DeleteAccount(ctx, username)
}

func (s *timedStore) AddValue(ctx context.Context, subdomain, txt string) error {
	defer s.observe("add_value", time.Now())
	return s.Store.AddValue(ctx, subdomain, txt)
}

func (s *timedStore) RemoveValue(ctx context.Context, subdomain, txt string) error {
	defer s.observe("remove_value", time.Now())
	return s.Store.RemoveValue(ctx, subdomain, txt)
}

func (s *timedStore) Republish(ctx context.Context, subdomain string) error {
	defer s.observe("republish", time.Now())
	return s.Store.Republish(ctx, subdomain)
}

func (s *timedStore) ClearValues(ctx context.Context, subdomain string) error {
	defer s.observe("clear_values", time.Now())
	return s.Store.ClearValues(ctx, subdomain)
}

func (s *timedStore) Ping(ctx context.Context) error {
	defer s.observe("ping", time.Now())
	return s.Store.Ping(ctx)
}
