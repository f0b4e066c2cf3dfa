// Package httpapi serves the acme-dns-compatible HTTP API (register,
// update, health) and, later, delegated's own extensions. Its replies on
// the compatible surface match acme-dns byte for byte, since existing
// clients parse them with anything from encoding/json to sed.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/delegated/delegated/store"
)

// Store is what the API needs from persistence.
type Store interface {
	CreateAccount(ctx context.Context, a store.Account) error
	AccountByUsername(ctx context.Context, username string) (store.Account, error)
	AddValue(ctx context.Context, subdomain, txt string) error
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
	// BcryptConcurrency bounds simultaneous bcrypt computations so that a
	// flood of wrong keys cannot take every core from the DNS server.
	// Default: half the CPUs, at least 1.
	BcryptConcurrency int
	// CredentialCacheSize bounds the verified-credential cache. Default 100000.
	CredentialCacheSize int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// API is the HTTP API.
type API struct {
	opts   Options
	store  Store
	log    *slog.Logger
	auth   *authenticator
	router *httprouter.Router
	unsub  func()

	mu      sync.Mutex
	servers []*http.Server
	addrs   []string
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
	auth, err := newAuthenticator(st, opts.BcryptCost, opts.BcryptConcurrency, opts.CredentialCacheSize)
	if err != nil {
		return nil, err
	}
	a := &API{opts: opts, store: st, log: opts.Logger.With("component", "api"), auth: auth}
	a.unsub = st.Subscribe(auth.forget)
	a.router = a.routes()
	return a, nil
}

// routes is the one place that lists every endpoint.
func (a *API) routes() *httprouter.Router {
	r := httprouter.New()
	r.POST("/register", a.register)
	r.POST("/update", a.update)
	r.GET("/health", a.health)
	r.HEAD("/health", a.health)
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found")
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed")
	})
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
	for _, ln := range lns {
		srv := &http.Server{
			Handler:           a.router,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		}
		a.servers = append(a.servers, srv)
		a.addrs = append(a.addrs, ln.Addr().String())
		a.log.Info("api listening", "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
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
	a.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.unsub()
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
