package console

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "operator-token-0123456789"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestConsole(t *testing.T, token string, clk *clock) *Console {
	t.Helper()
	c, err := New(Options{Token: token, Now: clk.now, SessionTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(h http.Handler, method, target string, body string, mod func(*http.Request)) *httptest.ResponseRecorder {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.RemoteAddr = "192.0.2.7:4242"
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func login(t *testing.T, h http.Handler, token string, mod func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	return request(h, http.MethodPost, "/console/login", url.Values{"token": {token}}.Encode(), mod)
}

func sessionCookie(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie; status %d, headers %v", CookieName, w.Code, w.Header())
	return nil
}

func withCookie(c *http.Cookie) func(*http.Request) {
	return func(r *http.Request) { r.AddCookie(c) }
}

func TestNewNeedsToken(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a token succeeded; the console must be off without one")
	}
}

func TestSecurityHeaders(t *testing.T) {
	c := newTestConsole(t, testToken, &clock{t: time.Unix(1e9, 0)})
	for _, path := range []string{"/console/login", "/console/", "/console/assets/app.js", "/console/nothing"} {
		w := request(c.Handler(), http.MethodGet, path, "", nil)
		h := w.Header()
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
			t.Errorf("%s: CSP %q allows inline code or another origin", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", path, h)
		}
	}
}

func TestAssetsHaveNoInlineScript(t *testing.T) {
	c := newTestConsole(t, testToken, &clock{t: time.Unix(1e9, 0)})
	for name, a := range c.files {
		body := string(a.body)
		if !strings.HasSuffix(name, ".html") {
			continue
		}
		// Every <script> names a same-origin src; no on* handlers.
		for _, part := range strings.Split(body, "<script")[1:] {
			if !strings.HasPrefix(strings.TrimSpace(part), `src="/console/assets/`) {
				t.Errorf("%s: inline or foreign script: <script%.60s", name, part)
			}
		}
		for _, bad := range []string{" onclick=", " onload=", " onsubmit=", "javascript:", "http://", "https://", " style="} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}

func TestLogin(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	c := newTestConsole(t, testToken, clk)
	h := c.Handler()

	w := request(h, http.MethodGet, "/console/", "", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/login" {
		t.Fatalf("page without a session: %d %v, want a redirect to the login", w.Code, w.Header())
	}
	w = request(h, http.MethodGet, "/console/login", "", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="token"`) {
		t.Fatalf("login page: %d %s", w.Code, w.Body)
	}

	w = login(t, h, "wrong", nil)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "Wrong token") {
		t.Fatalf("wrong token: %d %s", w.Code, w.Body)
	}
	for _, ck := range w.Result().Cookies() {
		if ck.Name == CookieName && ck.Value != "" {
			t.Fatalf("wrong token got a session cookie")
		}
	}

	w = login(t, h, testToken, nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/" {
		t.Fatalf("right token: %d %v", w.Code, w.Header())
	}
	ck := sessionCookie(t, w)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", ck)
	}
	if want := clk.now().Add(time.Hour); !ck.Expires.Equal(want) || ck.MaxAge != 3600 {
		t.Errorf("cookie expires %v (max-age %d), want %v", ck.Expires, ck.MaxAge, want)
	}
	w = request(h, http.MethodGet, "/console/", "", withCookie(ck))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<form name="issue">`) {
		t.Fatalf("page with a session: %d", w.Code)
	}

	// Over TLS the cookie is Secure.
	w = login(t, h, testToken, func(r *http.Request) { r.TLS = &tls.ConnectionState{} })
	if ck := sessionCookie(t, w); !ck.Secure {
		t.Errorf("cookie over TLS is not Secure: %+v", ck)
	}
}

func TestLoginRateLimited(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	c := newTestConsole(t, testToken, clk)
	h := c.Handler()
	for i := 0; i < 5; i++ {
		if w := login(t, h, "guess", nil); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, w.Code)
		}
	}
	// Now even the right token is refused from that address…
	w := login(t, h, testToken, nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" {
		t.Fatalf("after 5 failures: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	// …but not from another one, nor from the same /64 on IPv6 once…
	other := func(r *http.Request) { r.RemoteAddr = "198.51.100.1:1" }
	if w := login(t, h, testToken, other); w.Code != http.StatusSeeOther {
		t.Fatalf("other address: %d", w.Code)
	}
	// …and the window ends.
	clk.add(time.Minute)
	if w := login(t, h, testToken, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("after the window: %d", w.Code)
	}
}

func TestLoginRateLimitBySource(t *testing.T) {
	// The source is what Options.ClientSource says: here every address of
	// 2001:db8::/64 is one source.
	c, err := New(Options{Token: testToken, Now: (&clock{t: time.Unix(1e9, 0)}).now, ClientSource: func(r *http.Request) (netip.Prefix, bool) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return netip.Prefix{}, false
		}
		p, _ := ap.Addr().Prefix(64)
		return p, true
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler()
	for i := 0; i < 5; i++ {
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)})
		login(t, h, "guess", func(r *http.Request) { r.RemoteAddr = netip.AddrPortFrom(addr, 1).String() })
	}
	w := login(t, h, testToken, func(r *http.Request) { r.RemoteAddr = "[2001:db8::99]:1" })
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("another address of the same source: %d, want 429", w.Code)
	}
	if w := login(t, h, testToken, func(r *http.Request) { r.RemoteAddr = "bad" }); w.Code != http.StatusBadRequest {
		t.Fatalf("unknown source: %d, want 400", w.Code)
	}
}

func TestSessionAndCSRF(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	c := newTestConsole(t, testToken, clk)
	h := c.Handler()

	if w := request(h, http.MethodGet, "/console/session", "", nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("session without a cookie: %d", w.Code)
	}
	ck := sessionCookie(t, login(t, h, testToken, nil))
	w := request(h, http.MethodGet, "/console/session", "", withCookie(ck))
	var s struct {
		CSRF string `json:"csrf"`
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &s) != nil || s.CSRF == "" {
		t.Fatalf("session: %d %s", w.Code, w.Body)
	}

	req := func(method string, cookie *http.Cookie, csrf string) *http.Request {
		r := httptest.NewRequest(method, "/v1/certificates/x/renew", nil)
		if cookie != nil {
			r.AddCookie(cookie)
		}
		if csrf != "" {
			r.Header.Set(CSRFHeader, csrf)
		}
		return r
	}
	tests := []struct {
		name   string
		r      *http.Request
		wantOK bool
	}{
		{"no cookie", req(http.MethodGet, nil, ""), false},
		{"GET with cookie", req(http.MethodGet, ck, ""), true},
		{"POST without CSRF", req(http.MethodPost, ck, ""), false},
		{"POST wrong CSRF", req(http.MethodPost, ck, s.CSRF[:len(s.CSRF)-2]+"AA"), false},
		{"DELETE without CSRF", req(http.MethodDelete, ck, ""), false},
		{"POST CSRF without cookie", req(http.MethodPost, nil, s.CSRF), false},
		{"POST with CSRF", req(http.MethodPost, ck, s.CSRF), true},
		{"forged cookie", req(http.MethodGet, &http.Cookie{Name: CookieName, Value: ck.Value[:10] + "." + strings.Repeat("A", 43)}, ""), false},
	}
	for _, tc := range tests {
		if got := c.Authorized(tc.r); got != tc.wantOK {
			t.Errorf("%s: authorized %v, want %v", tc.name, got, tc.wantOK)
		}
	}

	// Another session's CSRF token does not fit this one.
	ck2 := sessionCookie(t, login(t, h, testToken, nil))
	if c.Authorized(req(http.MethodPost, ck2, s.CSRF)) {
		t.Error("one session's CSRF token accepted with another session")
	}

	// A restart with the same token keeps the session; a new token ends it.
	same := newTestConsole(t, testToken, clk)
	if !same.Authorized(req(http.MethodGet, ck, "")) {
		t.Error("session lost on a restart with the same token")
	}
	rotated := newTestConsole(t, "a-new-token", clk)
	if rotated.Authorized(req(http.MethodGet, ck, "")) {
		t.Error("session survived a restart with a new token")
	}

	// Logout needs the CSRF token, then ends the session.
	if w := request(h, http.MethodPost, "/console/logout", "", withCookie(ck)); w.Code != http.StatusUnauthorized {
		t.Fatalf("logout without CSRF: %d", w.Code)
	}
	w = request(h, http.MethodPost, "/console/logout", "", func(r *http.Request) {
		r.AddCookie(ck)
		r.Header.Set(CSRFHeader, s.CSRF)
	})
	if w.Code != http.StatusNoContent {
		t.Fatalf("logout: %d", w.Code)
	}
	if c.Authorized(req(http.MethodGet, ck, "")) {
		t.Error("session valid after logout")
	}
	if !c.Authorized(req(http.MethodGet, ck2, "")) {
		t.Error("logout ended another session")
	}

	// Sessions expire.
	clk.add(time.Hour)
	if c.Authorized(req(http.MethodGet, ck2, "")) {
		t.Error("session valid after its expiry")
	}
}

func TestAssetsServed(t *testing.T) {
	c := newTestConsole(t, testToken, &clock{t: time.Unix(1e9, 0)})
	h := c.Handler()
	for path, ctype := range map[string]string{
		"/console/assets/app.js":  "text/javascript; charset=utf-8",
		"/console/assets/app.css": "text/css; charset=utf-8",
	} {
		w := request(h, http.MethodGet, path, "", nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != ctype || w.Header().Get("ETag") == "" {
			t.Errorf("%s: %d %v", path, w.Code, w.Header())
		}
		etag := w.Header().Get("ETag")
		w = request(h, http.MethodGet, path, "", func(r *http.Request) { r.Header.Set("If-None-Match", etag) })
		if w.Code != http.StatusNotModified {
			t.Errorf("%s revalidated: %d", path, w.Code)
		}
	}
	// The pages are not reachable as assets, past their checks.
	for _, path := range []string{"/console/assets/index.html", "/console/assets/login.html", "/console/assets/../console.go"} {
		if w := request(h, http.MethodGet, path, "", nil); w.Code == http.StatusOK {
			t.Errorf("%s served", path)
		}
	}
}
