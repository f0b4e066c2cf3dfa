// Package httpapi serves the acme-dns-compatible HTTP API (register,
// update, health) and, later, delegated's own extensions. Its replies on
// the compatible surface match acme-dns byte for byte, since existing
// clients parse them with anything from encoding/json to sed.
package httpapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/delegated/delegated/store"
)

// Store is what the API needs from persistence.
type Store interface {
	CreateAccount(ctx context.Context, a store.Account) error
	AccountByUsername(ctx context.Context, username string) (store.Account, error)
	DeleteAccount(ctx context.Context, username string) error
	AddValue(ctx context.Context, subdomain, txt string) error
	RemoveValue(ctx context.Context, subdomain, txt string) error
	ClearValues(ctx context.Context, subdomain string) error
	Republish(ctx context.Context, subdomain string) error
	Ping(ctx context.Context) error
	Subscribe(fn func(store.SubdomainState)) (cancel func())
}

// maxBodyBytes bounds every request body; anything larger is 413.
const maxBodyBytes = 64 << 10

// Options tunes the API. Zero values mean the documented defaults.
type Options struct {
	// Zone is the served zone, e.g. "auth.example.org" (a trailing dot is
	// dropped: fulldomain is reported without one).
	Zone string
	// Listen are host:port addresses for HTTP.
	Listen []string
	// BcryptCost for new keys. Default 10 (acme-dns's, so imported hashes
	// and new ones cost the same to check).
	BcryptCost int
	// BcryptConcurrency bounds simultaneous bcrypt computations on
	// low-priority threads so that a flood of wrong keys cannot take every
	// core from the DNS server; the starvation rescue adds one at most.
	// Default: half the CPUs, at least 1.
	BcryptConcurrency int
	// CredentialCacheSize bounds the verified-credential cache. Default 100000.
	CredentialCacheSize int
	// Logger; default slog.Default().
	Logger *slog.Logger

	// Registration is who may POST /register. Default RegistrationOpen.
	Registration RegistrationMode
	// RegistrationToken is the pre-shared token for RegistrationToken mode.
	RegistrationToken string
	// RegisterRate and RegisterPer limit registrations per source address
	// (IPv6: per /64) to RegisterRate per RegisterPer. Zero: no limit.
	RegisterRate int
	RegisterPer  time.Duration
	// AuthFailureRate and AuthFailurePer limit failed authentications per
	// source address (IPv6: per /64): once a source has failed
	// AuthFailureRate times within AuthFailurePer, a credential that is not
	// already verified and cached is refused with 429 before bcrypt, so a
	// wrong-key flood from one address stops costing bcrypt. Defaults 20
	// per minute; a negative rate turns the limit off.
	AuthFailureRate int
	AuthFailurePer  time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// TLSCertFile and TLSKeyFile, when set, make every listener HTTPS. The
	// pair is reloaded when TLSReload receives or when either file's mtime or
	// size changes (checked every TLSCheckInterval, default 30s).
	TLSCertFile      string
	TLSKeyFile       string
	TLSReload        <-chan struct{}
	TLSCheckInterval time.Duration
	// TLSPlaceholder, when set, lets the files be missing at start: a
	// self-signed certificate for these names is served until they exist
	// ([api] tls = "acme" before the first issuance).
	TLSPlaceholder []string
	// Metrics, when not nil, receives the API's metrics and is served at
	// /metrics. A registry of the caller's, never the global one.
	Metrics *prometheus.Registry
	// Now is the clock for rate limiting; default time.Now.
	Now func() time.Time
	// Operator, when not nil, serves /v1/ on the HTTP listener: the
	// operator API's TokenHandler (it requires its bearer token).
	Operator http.Handler
	// ReadTimeout and WriteTimeout bound reading a request and writing its
	// reply on the HTTP listener; streaming replies lift them (see
	// beginStream). Default 30s each.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// Console, when not nil, serves /console and /console/… (the operator
	// console; it checks its own session).
	Console http.Handler
}

// API is the HTTP API.
type API struct {
	opts   Options
	store  Store
	log    *slog.Logger
	auth   *authenticator
	router *httprouter.Router
	unsub  func()

	trusted  []netip.Prefix
	regLimit *rateLimiter
	// authFailures counts failed authentications per source (nil: off).
	authFailures *rateLimiter
	regDigest    [sha256.Size]byte
	metrics      *apiMetrics
	certs        *certReloader

	mu         sync.Mutex
	servers    []*http.Server
	addrs      []string
	stopReload context.CancelFunc
	reloadDone chan struct{}
}

// New builds the API on st.
func New(opts Options, st Store) (*API, error) {
	opts.Zone = strings.TrimSuffix(strings.ToLower(opts.Zone), ".")
	if opts.Zone == "" {
		return nil, errors.New("httpapi: no zone configured")
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = 10
	}
	if opts.BcryptConcurrency <= 0 {
		opts.BcryptConcurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if opts.CredentialCacheSize <= 0 {
		opts.CredentialCacheSize = 100000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuthFailureRate == 0 {
		opts.AuthFailureRate = defaultAuthFailureRate
	}
	if opts.AuthFailurePer <= 0 {
		opts.AuthFailurePer = defaultAuthFailurePer * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = defaultReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimeout
	}
	if opts.TLSCheckInterval <= 0 {
		opts.TLSCheckInterval = 30 * time.Second
	}
	switch opts.Registration {
	case RegistrationOpen, RegistrationClosed:
	case RegistrationToken:
		if opts.RegistrationToken == "" {
			return nil, errors.New("httpapi: registration mode \"token\" needs a registration token")
		}
	default:
		return nil, fmt.Errorf("httpapi: unknown registration mode %d", opts.Registration)
	}
	a := &API{
		opts:      opts,
		log:       opts.Logger.With("component", "api"),
		trusted:   opts.TrustedProxies,
		regDigest: sha256.Sum256([]byte(opts.RegistrationToken)),
	}
	reg := opts.Metrics
	if reg == nil {
		// Instrumentation stays on (it is cheap) but nothing serves it.
		reg = prometheus.NewRegistry()
	}
	m, err := newAPIMetrics(reg, st)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	a.store = instrumentStore(st, m)
	if opts.AuthFailureRate > 0 {
		a.authFailures = newRateLimiter(opts.AuthFailureRate, opts.AuthFailurePer, opts.Now)
	}
	if opts.RegisterRate > 0 && opts.RegisterPer > 0 {
		a.regLimit = newRateLimiter(opts.RegisterRate, opts.RegisterPer, opts.Now)
	}
	if opts.TLSCertFile != "" || opts.TLSKeyFile != "" {
		if a.certs, err = newCertReloader(opts.TLSCertFile, opts.TLSKeyFile, opts.TLSPlaceholder, a.log); err != nil {
			return nil, err
		}
	}
	auth, err := newAuthenticator(a.store, opts.BcryptCost, opts.BcryptConcurrency, opts.CredentialCacheSize)
	if err != nil {
		return nil, err
	}
	a.auth = auth
	rescued := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "delegated_bcrypt_rescued_total",
		Help: "bcrypt computations run at the normal priority because the low-priority threads got no CPU (other processes saturate the machine).",
	}, func() float64 { return float64(auth.bcrypt.rescued.Load()) })
	if err := reg.Register(rescued); err != nil {
		auth.bcrypt.close()
		return nil, fmt.Errorf("httpapi: register metrics: %w", err)
	}
	a.unsub = st.Subscribe(auth.forget)
	a.router = a.routes()
	return a, nil
}

// routes is the one place that lists every endpoint.
func (a *API) routes() *httprouter.Router {
	r := httprouter.New()
	in := a.metrics.instrument
	// §1, the acme-dns-compatible surface.
	r.POST("/register", in("register", a.register))
	r.POST("/update", in("update", a.update))
	r.GET("/health", in("health", a.health))
	r.HEAD("/health", in("health", a.health))
	// §2, extensions: lego httpreq.
	r.POST("/present", in("present", a.present))
	r.POST("/cleanup", in("cleanup", a.cleanup))
	// §2, extensions: deletion. Each has a POST form for clients that
	// cannot send DELETE with a body.
	r.DELETE("/update", in("delete_value", a.deleteValue))
	r.POST("/delete", in("delete_value", a.deleteValue))
	r.POST("/clear", in("clear", a.clearValues))
	r.DELETE("/register", in("deregister", a.deregister))
	r.POST("/deregister", in("deregister", a.deregister))
	r.POST("/sync", in("sync", a.sync))
	if a.opts.Metrics != nil {
		r.Handler(http.MethodGet, "/metrics", a.metrics.handler(a.opts.Metrics))
	}
	// The operator API (operator.go), when mounted; it checks its own token.
	if a.opts.Operator != nil {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			r.Handler(m, "/v1/*path", a.opts.Operator)
		}
	}
	if a.opts.Console != nil {
		r.Handler(http.MethodGet, "/console", a.opts.Console)
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
			r.Handler(m, "/console/*path", a.opts.Console)
		}
	}
	notFound := in("other", func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		writeError(w, http.StatusNotFound, "not_found")
	})
	notAllowed := in("other", func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed")
	})
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { notFound(w, req, nil) })
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { notAllowed(w, req, nil) })
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, p any) {
		a.log.Error("panic in handler", "path", req.URL.Path, "panic", p)
		writeError(w, http.StatusInternalServerError, "internal_error")
	}
	return r
}

// Handler serves the API's routes.
func (a *API) Handler() http.Handler { return a.router }

// Start binds every listen address and serves in the background.
func (a *API) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var lns []net.Listener
	for _, addr := range a.opts.Listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("httpapi: listen on %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	if a.certs != nil {
		ctx, cancel := context.WithCancel(context.Background())
		a.stopReload = cancel
		done := make(chan struct{})
		a.reloadDone = done
		go func() {
			// done, not a.reloadDone: Shutdown clears the field, maybe
			// before this goroutine runs.
			defer close(done)
			a.certs.run(ctx, a.opts.TLSCheckInterval, a.opts.TLSReload)
		}()
	}
	for _, ln := range lns {
		srv := &http.Server{
			Handler:           a.router,
			ReadHeaderTimeout: min(10*time.Second, a.opts.ReadTimeout),
			ReadTimeout:       a.opts.ReadTimeout,
			WriteTimeout:      a.opts.WriteTimeout,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		}
		if a.certs != nil {
			srv.TLSConfig = a.certs.tlsConfig()
		} else {
			// net/http's own error replies in JSON (jsonconn.go).
			ln = jsonErrorListener{ln}
		}
		a.servers = append(a.servers, srv)
		a.addrs = append(a.addrs, ln.Addr().String())
		a.log.Info("api listening", "addr", ln.Addr().String(), "tls", a.certs != nil)
		go func() {
			var err error
			if srv.TLSConfig != nil {
				// Empty file names: the certificate comes from GetCertificate.
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("api listener stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

// Addrs are the bound addresses.
func (a *API) Addrs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.addrs...)
}

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (a *API) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	servers := a.servers
	a.servers = nil
	stopReload, reloadDone := a.stopReload, a.reloadDone
	a.stopReload, a.reloadDone = nil, nil
	a.mu.Unlock()
	if stopReload != nil {
		stopReload()
		<-reloadDone
	}
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.unsub()
	a.auth.bcrypt.close()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("httpapi: shutdown: %w", err)
	}
	return nil
}

func (a *API) health(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		a.log.Warn("health check: store unavailable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store_unavailable")
		return
	}
	w.WriteHeader(http.StatusOK)
}
