// Package console is the operator console: a web page, served under
// /console/ on the HTTP API listener, that lists every certificate and
// drives the operator API (/v1/…) with the operator's session.
//
// The package owns the page's static files (embedded), the login with the
// operator token, the session cookie and its CSRF token, and the security
// headers. It does not read certificates itself: the page's script calls
// the operator API, which accepts a session through Authorized.
package console

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"time"
)

//go:embed assets
var assets embed.FS

// Options configures the console. Zero values are the documented defaults.
type Options struct {
	// Token is the operator token; required.
	Token string
	// SessionTTL is how long a login lasts; default 12h.
	SessionTTL time.Duration
	// LoginFailures failed logins per source address (IPv6: per /64)
	// within LoginWindow lock that source out until the window ends;
	// defaults 5 and 1 minute.
	LoginFailures int
	LoginWindow   time.Duration
	// ClientSource is the source a login counts against (the API's view:
	// it knows trusted proxies and groups IPv6 by /64); ok false refuses
	// the login. Default: the TCP peer's address alone.
	ClientSource func(*http.Request) (src netip.Prefix, ok bool)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Console serves the console's pages and checks its sessions.
type Console struct {
	opts     Options
	log      *slog.Logger
	sessions *sessions
	limiter  *loginLimiter
	login    *template.Template
	files    map[string]asset
}

// asset is an embedded file ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Security headers of every console response. The page's script and
// style come from this origin only; nothing is inline, nothing is framed.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// maxLoginBody bounds a login form.
const maxLoginBody = 4 << 10

// New builds the console.
func New(opts Options) (*Console, error) {
	if opts.Token == "" {
		return nil, errors.New("console: no operator token: the console is only served when one is configured")
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.LoginFailures <= 0 {
		opts.LoginFailures = 5
	}
	if opts.LoginWindow <= 0 {
		opts.LoginWindow = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ClientSource == nil {
		opts.ClientSource = peerSource
	}
	c := &Console{
		opts:     opts,
		log:      opts.Logger.With("component", "console"),
		sessions: newSessions(opts.Token, opts.SessionTTL, opts.Now),
		limiter:  newLoginLimiter(opts.LoginFailures, opts.LoginWindow, opts.Now),
		files:    map[string]asset{},
	}
	var err error
	if c.login, err = template.ParseFS(assets, "assets/login.html"); err != nil {
		return nil, fmt.Errorf("console: login page: %w", err)
	}
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	err = fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		c.files[path.Base(p)] = asset{body: b, contentType: types[path.Ext(p)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console: assets: %w", err)
	}
	return c, nil
}

func peerSource(r *http.Request) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Prefix{}, false
	}
	a := ap.Addr().Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// Authorized reports whether r carries a console session and, for a
// state-changing method, its CSRF token: the operator API's alternative to
// its bearer token.
func (c *Console) Authorized(r *http.Request) bool { return c.sessions.authorized(r) }

// Handler serves /console and everything below it.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /console/{$}", c.index)
	mux.HandleFunc("GET /console/login", c.loginPage)
	mux.HandleFunc("POST /console/login", c.loginSubmit)
	mux.HandleFunc("POST /console/logout", c.logout)
	mux.HandleFunc("GET /console/session", c.session)
	mux.HandleFunc("GET /console/assets/{file}", c.asset)
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

func (c *Console) index(w http.ResponseWriter, r *http.Request) {
	if _, err := c.sessions.fromRequest(r); err != nil {
		http.Redirect(w, r, "/console/login", http.StatusSeeOther)
		return
	}
	c.serveAsset(w, r, "index.html")
}

func (c *Console) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "index.html" || name == "login.html" {
		// Pages are served at their own routes, with their checks.
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	c.serveAsset(w, r, name)
}

func (c *Console) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := c.files[name]
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	// The files change only with the binary: revalidate by ETag.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// loginView is what the login template shows.
type loginView struct {
	Error string
}

func (c *Console) renderLogin(w http.ResponseWriter, status int, msg string) {
	var b bytes.Buffer
	if err := c.login.Execute(&b, loginView{Error: msg}); err != nil {
		c.log.Error("render login page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, err := c.sessions.fromRequest(r); err == nil {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	c.renderLogin(w, http.StatusOK, "")
}

func (c *Console) loginSubmit(w http.ResponseWriter, r *http.Request) {
	addr, ok := c.opts.ClientSource(r)
	if !ok {
		c.renderLogin(w, http.StatusBadRequest, "Your address could not be determined; log in directly, not through an untrusted proxy.")
		return
	}
	if until, blocked := c.limiter.blocked(addr); blocked {
		wait := max(1, int(until.Sub(c.opts.Now()).Seconds()+0.5))
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		c.log.Warn("console login refused: too many failures", "client", addr)
		c.renderLogin(w, http.StatusTooManyRequests, fmt.Sprintf("Too many failed logins from your address; try again in %d seconds.", wait))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		c.renderLogin(w, http.StatusBadRequest, "The login form could not be read; reload the page and try again.")
		return
	}
	got := sha256.Sum256([]byte(r.PostForm.Get("token")))
	want := sha256.Sum256([]byte(c.opts.Token))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.limiter.fail(addr)
		c.log.Warn("console login failed: wrong token", "client", addr)
		c.renderLogin(w, http.StatusUnauthorized, "Wrong token. Use the operator token of this daemon ([issuer] operator_token_file).")
		return
	}
	value, exp, err := c.sessions.create()
	if err != nil {
		c.log.Error("console session", "err", err)
		c.renderLogin(w, http.StatusInternalServerError, "No session could be created; see the daemon's log.")
		return
	}
	http.SetCookie(w, c.cookie(r, value, exp))
	c.log.Info("console login", "client", addr, "expires", exp)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

// cookie is the session cookie. Its path is / because the page calls the
// operator API under /v1/ with it.
func (c *Console) cookie(r *http.Request, value string, exp time.Time) *http.Cookie {
	ck := &http.Cookie{
		Name: CookieName, Value: value, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
	if exp.IsZero() {
		ck.MaxAge = -1
	} else {
		ck.Expires = exp
		ck.MaxAge = int(exp.Sub(c.opts.Now()).Seconds())
	}
	return ck
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// session gives the page its CSRF token and the session's expiry.
func (c *Console) session(w http.ResponseWriter, r *http.Request) {
	ss, err := c.sessions.fromRequest(r)
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "log in at /console/login"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"csrf": c.sessions.csrf(ss), "expires": ss.exp.UTC()})
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	ss, err := c.sessions.fromRequest(r)
	if err != nil || !c.sessions.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no session, or no CSRF token"})
		return
	}
	c.sessions.end(ss)
	http.SetCookie(w, c.cookie(r, "", time.Time{}))
	if addr, ok := c.opts.ClientSource(r); ok {
		c.log.Info("console logout", "client", addr)
	}
	w.WriteHeader(http.StatusNoContent)
}
