package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
)

// Issuer is what the operator API needs from the certificate issuer.
// Payloads are JSON-encodable values the handler passes through; errors may
// wrap ErrOperatorNotFound or ErrOperatorInvalid to choose the status.
type Issuer interface {
	// Issue records a request; started reports whether an attempt began,
	// whose progress Watch then delivers.
	Issue(ctx context.Context, name string, domains []string) (payload any, started bool, err error)
	Certificates(ctx context.Context) (any, error)
	Certificate(ctx context.Context, name string) (any, error)
	Delegation(ctx context.Context, name string) (any, error)
	Retry(ctx context.Context, name string) (payload any, started bool, err error)
	// Renew starts a renewal of name when due (or with force); started
	// reports whether it did. RenewDue does so for every certificate.
	Renew(ctx context.Context, name string, force bool) (payload any, started bool, err error)
	RenewDue(ctx context.Context, force bool) (any, error)
	Revoke(ctx context.Context, name, reason string) (any, error)
	Delete(ctx context.Context, name string) error
	// Watch delivers name's progress events until cancel is called.
	Watch(name string) (events <-chan OperatorEvent, cancel func())
}

// OperatorEvent is one progress report; Final marks the end of an attempt.
type OperatorEvent struct {
	Body  any
	Final bool
}

// Errors an Issuer wraps to select the HTTP status.
var (
	ErrOperatorNotFound = errors.New("not found")
	ErrOperatorInvalid  = errors.New("invalid request")
)

// OperatorOptions configures the operator API.
type OperatorOptions struct {
	// Socket is the unix socket path; it is created 0600 (owner only).
	// Empty means no socket.
	Socket string
	// Token, when not empty, is the bearer token TokenHandler requires.
	Token string
	// Session, when set, is TokenHandler's alternative to the token: the
	// operator console's session cookie with its CSRF header.
	Session func(*http.Request) bool
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Operator serves the operator API: over a unix socket whose permission is
// the credential, and through TokenHandler (mounted on the HTTP listener)
// with a bearer token. It is never reachable without one of them.
type Operator struct {
	opts   OperatorOptions
	iss    Issuer
	log    *slog.Logger
	router *httprouter.Router

	mu  sync.Mutex
	srv *http.Server
}

// NewOperator builds the operator API on iss.
func NewOperator(opts OperatorOptions, iss Issuer) *Operator {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	o := &Operator{opts: opts, iss: iss, log: opts.Logger.With("component", "operator_api")}
	o.router = o.operatorRoutes()
	return o
}

// operatorRoutes is the one place that lists the operator endpoints.
func (o *Operator) operatorRoutes() *httprouter.Router {
	r := httprouter.New()
	r.GET("/v1/certificates", o.list)
	r.POST("/v1/certificates", o.issue)
	r.GET("/v1/certificates/:name", o.get)
	r.DELETE("/v1/certificates/:name", o.delete)
	r.POST("/v1/certificates/:name/retry", o.retry)
	r.POST("/v1/certificates/:name/revoke", o.revoke)
	r.POST("/v1/certificates/:name/renew", o.renew)
	r.POST("/v1/renew", o.renewDue)
	r.GET("/v1/delegation", o.delegation)
	r.GET("/v1/certificates/:name/events", o.events)
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeOperatorError(w, http.StatusNotFound, "no such endpoint")
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, p any) {
		o.log.Error("panic in operator handler", "path", req.URL.Path, "panic", p)
		writeOperatorError(w, http.StatusInternalServerError, "internal error")
	}
	return r
}

// TokenHandler serves the operator API to requests bearing the token, for
// mounting on the HTTP listener; with no token configured it refuses all.
func (o *Operator) TokenHandler() http.Handler {
	want := []byte("Bearer " + o.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		session := len(got) == 0 && o.opts.Session != nil && o.opts.Session(r)
		if o.opts.Token == "" || (!session && subtle.ConstantTimeCompare(got, want) != 1) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="delegated operator"`)
			writeOperatorError(w, http.StatusUnauthorized, "operator token required")
			return
		}
		o.router.ServeHTTP(w, r)
	})
}

// Start listens on the unix socket. The socket is created inside a fresh
// 0700 directory and renamed into place, so it is never reachable by others
// even for an instant before its mode is set.
func (o *Operator) Start() error {
	if o.opts.Socket == "" {
		return nil
	}
	if err := removeStaleSocket(o.opts.Socket); err != nil {
		return err
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(o.opts.Socket), ".operator-")
	if err != nil {
		return fmt.Errorf("operator api: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return fmt.Errorf("operator api: listen on %s: %w", o.opts.Socket, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("operator api: chmod socket: %w", err)
	}
	if err := os.Rename(tmp, o.opts.Socket); err != nil {
		ln.Close()
		return fmt.Errorf("operator api: place socket: %w", err)
	}
	srv := &http.Server{
		Handler:           o.router,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(o.log.Handler(), slog.LevelDebug),
	}
	o.mu.Lock()
	o.srv = srv
	o.mu.Unlock()
	o.log.Info("operator api listening", "socket", o.opts.Socket)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("operator api stopped", "err", err)
		}
	}()
	return nil
}

// removeStaleSocket removes a socket left by a previous run, and refuses
// to remove anything else or a socket some process still serves.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("operator api: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("operator api: %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("operator api: %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("operator api: remove stale socket: %w", err)
	}
	return nil
}

// Shutdown stops the socket listener, waits for requests until ctx ends,
// and removes the socket.
func (o *Operator) Shutdown(ctx context.Context) error {
	o.mu.Lock()
	srv := o.srv
	o.srv = nil
	o.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	os.Remove(o.opts.Socket)
	if err != nil {
		return fmt.Errorf("operator api: shutdown: %w", err)
	}
	return nil
}

type issueRequest struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	// Wait streams progress (NDJSON) until the attempt ends.
	Wait bool `json:"wait"`
}

func (o *Operator) list(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	v, err := o.iss.Certificates(r.Context())
	o.replyList(w, r, v, err)
}

func (o *Operator) get(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	v, err := o.iss.Certificate(r.Context(), p.ByName("name"))
	o.reply(w, v, err)
}

func (o *Operator) delegation(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	v, err := o.iss.Delegation(r.Context(), r.URL.Query().Get("cert-name"))
	o.reply(w, v, err)
}

func (o *Operator) delete(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	err := o.iss.Delete(r.Context(), p.ByName("name"))
	o.reply(w, map[string]string{"deleted": p.ByName("name")}, err)
}

func (o *Operator) revoke(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var req struct {
		Reason string `json:"reason"`
	}
	if !o.decode(w, r, &req) {
		return
	}
	v, err := o.iss.Revoke(r.Context(), p.ByName("name"), req.Reason)
	o.reply(w, v, err)
}

func (o *Operator) issue(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req issueRequest
	if !o.decode(w, r, &req) {
		return
	}
	name := strings.TrimSpace(req.Name)
	o.run(w, r, name, req.Wait, func() (any, bool, error) { return o.iss.Issue(r.Context(), name, req.Domains) })
}

func (o *Operator) retry(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var req struct {
		Wait bool `json:"wait"`
	}
	if !o.decode(w, r, &req) {
		return
	}
	name := p.ByName("name")
	o.run(w, r, name, req.Wait, func() (any, bool, error) { return o.iss.Retry(r.Context(), name) })
}

func (o *Operator) renew(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var req struct {
		Force bool `json:"force"`
		Wait  bool `json:"wait"`
	}
	if !o.decode(w, r, &req) {
		return
	}
	name := p.ByName("name")
	o.run(w, r, name, req.Wait, func() (any, bool, error) { return o.iss.Renew(r.Context(), name, req.Force) })
}

func (o *Operator) renewDue(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req struct {
		Force bool `json:"force"`
	}
	if !o.decode(w, r, &req) {
		return
	}
	v, err := o.iss.RenewDue(r.Context(), req.Force)
	o.reply(w, v, err)
}

// run performs an action that may start an attempt. Without wait it replies
// with the payload; with wait it streams NDJSON lines, first
// {"certificate": …}, then {"event": …} until the attempt ends. It watches
// before acting so no event is missed.
func (o *Operator) run(w http.ResponseWriter, r *http.Request, name string, wait bool, act func() (any, bool, error)) {
	events, cancel := o.iss.Watch(name)
	defer cancel()
	v, started, err := act()
	if err != nil || !wait {
		o.reply(w, v, err)
		return
	}
	// The HTTP listener's write timeout is sized for replies, not for an
	// attempt that may outlast it.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(maxEventStream + 10*time.Second))
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	_ = enc.Encode(map[string]any{"certificate": v})
	flush()
	if !started {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-events:
			_ = enc.Encode(map[string]any{"event": ev.Body})
			flush()
			if ev.Final {
				return
			}
		}
	}
}

func (o *Operator) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := readBody(w, r)
	if err == nil {
		err = decodeJSON(body, v)
	}
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			writeOperatorError(w, http.StatusRequestEntityTooLarge, "body too large")
		} else {
			writeOperatorError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		}
		return false
	}
	return true
}

// reply maps errors to statuses here, at the edge.
func (o *Operator) reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		b, err := json.Marshal(v)
		if err != nil {
			writeOperatorError(w, http.StatusInternalServerError, "encode reply")
			return
		}
		writeJSON(w, http.StatusOK, append(b, '\n'))
	case errors.Is(err, ErrOperatorNotFound):
		writeOperatorError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrOperatorInvalid):
		writeOperatorError(w, http.StatusBadRequest, err.Error())
	default:
		o.log.Error("operator request failed", "err", err)
		writeOperatorError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeOperatorError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	writeJSON(w, status, append(b, '\n'))
}
