package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/delegated/delegated/operator"
)

// Issuer is what the operator API needs from the certificate issuer
// (*issuer.Issuer implements it). Errors wrapping operator.ErrNotFound and
// operator.ErrInvalid choose 404 and 400.
type Issuer interface {
	// Issue records a request; a certificate returned processing has an
	// attempt under way, whose progress Subscribe delivers.
	Issue(ctx context.Context, req operator.Request) (operator.Cert, error)
	// IssueBatch records many requests at once, all or nothing; lines
	// number them in the operator's file.
	IssueBatch(ctx context.Context, reqs []operator.Request, lines []int) (operator.BatchResult, error)
	Certificates(ctx context.Context, f operator.Filter) ([]operator.Cert, error)
	Certificate(ctx context.Context, name string) (operator.Cert, error)
	Delegation(ctx context.Context, name string) ([]operator.Cert, error)
	Retry(ctx context.Context, name string) (operator.Cert, error)
	// Renew starts a renewal of name when due (or with force); started
	// reports whether it did. RenewDue does so for every certificate.
	Renew(ctx context.Context, name string, force bool) (c operator.Cert, started bool, err error)
	RenewDue(ctx context.Context, force bool) ([]string, error)
	Revoke(ctx context.Context, name, reason string) (operator.Cert, error)
	Delete(ctx context.Context, name string) error
	// State reports the issuer's queues and the CA's rate limit.
	State(ctx context.Context) operator.IssuerState
	// Subscribe delivers name's progress events until cancel is called.
	Subscribe(name string) (events <-chan operator.Event, cancel func())
}

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
	r.POST("/v1/batch", o.batch)
	r.GET("/v1/issuer", o.state)
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
	operator.Request
	// Wait streams progress (NDJSON) until the attempt ends.
	Wait bool `json:"wait"`
}

// list answers GET /v1/certificates[?status=…&domain=…].
func (o *Operator) list(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var f operator.Filter
	q := r.URL.Query()
	if s := q.Get("status"); s != "" {
		st, err := operator.ParseStatus(s)
		if err != nil {
			o.reply(w, nil, err)
			return
		}
		f.Status = st
	}
	f.Domain = q.Get("domain")
	v, err := o.iss.Certificates(r.Context(), f)
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

func (o *Operator) state(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	o.reply(w, o.iss.State(r.Context()), nil)
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
	req.Name = strings.TrimSpace(req.Name)
	o.run(w, r, req.Name, req.Wait, func() (operator.Cert, bool, error) {
		c, err := o.iss.Issue(r.Context(), req.Request)
		return c, c.Status == operator.StatusProcessing, err
	})
}

// batchRequest is POST /v1/batch: many certificates in one request.
type batchRequest struct {
	Certificates []operator.Request `json:"certificates"`
	// Lines, when given, number the certificates in the operator's file,
	// for the error messages.
	Lines []int `json:"lines,omitempty"`
}

// maxBatchBody bounds a batch request: 100,000 certificates of a few
// domains each.
const maxBatchBody = 64 << 20

// batch answers POST /v1/batch. A refused batch is 400 with the error and
// every bad line under "problems".
func (o *Operator) batch(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req batchRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBatchBody+1))
	if err == nil && len(body) > maxBatchBody {
		writeOperatorError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body too large (over %d MiB); split the batch", maxBatchBody>>20))
		return
	}
	if err == nil {
		err = decodeJSON(body, &req)
	}
	if err != nil {
		writeOperatorError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return
	}
	v, err := o.iss.IssueBatch(r.Context(), req.Certificates, req.Lines)
	var be *operator.BatchError
	if errors.As(err, &be) {
		b, _ := json.Marshal(map[string]any{"error": be.Error(), "problems": be.Problems})
		writeJSON(w, http.StatusBadRequest, append(b, '\n'))
		return
	}
	o.reply(w, v, err)
}

func (o *Operator) retry(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var req struct {
		Wait bool `json:"wait"`
	}
	if !o.decode(w, r, &req) {
		return
	}
	name := p.ByName("name")
	o.run(w, r, name, req.Wait, func() (operator.Cert, bool, error) {
		c, err := o.iss.Retry(r.Context(), name)
		return c, c.Status == operator.StatusProcessing, err
	})
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
	o.run(w, r, name, req.Wait, func() (operator.Cert, bool, error) { return o.iss.Renew(r.Context(), name, req.Force) })
}

func (o *Operator) renewDue(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req struct {
		Force bool `json:"force"`
	}
	if !o.decode(w, r, &req) {
		return
	}
	names, err := o.iss.RenewDue(r.Context(), req.Force)
	if names == nil {
		names = []string{}
	}
	o.reply(w, map[string][]string{"started": names}, err)
}

// run performs an action that may start an attempt. Without wait it replies
// with the certificate; with wait it streams NDJSON lines, first
// {"certificate": …}, then {"event": …} until the attempt ends. It
// subscribes before acting so no event is missed.
func (o *Operator) run(w http.ResponseWriter, r *http.Request, name string, wait bool, act func() (operator.Cert, bool, error)) {
	events, cancel := o.iss.Subscribe(name)
	defer cancel()
	v, started, err := act()
	if err != nil || !wait {
		o.reply(w, v, err)
		return
	}
	// The listener's read deadline would cancel the request (see
	// beginStream); its write timeout is sized for replies, not for an
	// attempt that may outlast it, so the stream gets a bound of its own.
	beginStream(w)
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
			_ = enc.Encode(map[string]any{"event": ev})
			flush()
			if ev.Final() {
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
	case errors.Is(err, operator.ErrNotFound):
		writeOperatorError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, operator.ErrInvalid):
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
