package httpapi_test

import (
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/delegated/delegated/httpapi"
)

func TestRegistrationModes(t *testing.T) {
	const token = "pre-shared-registration-token"
	cases := []struct {
		name string
		mode httpapi.RegistrationMode
		hdr  [][2]string
		code int
		resp string // "" when 201
	}{
		{"open, no token", httpapi.RegistrationOpen, nil, 201, ""},
		{"token, bearer", httpapi.RegistrationToken, [][2]string{{"Authorization", "Bearer " + token}}, 201, ""},
		{"token, custom header", httpapi.RegistrationToken, [][2]string{{"X-Registration-Token", token}}, 201, ""},
		{"token, none", httpapi.RegistrationToken, nil, 401, `{"error": "forbidden"}`},
		{"token, wrong", httpapi.RegistrationToken, [][2]string{{"Authorization", "Bearer " + token + "x"}}, 401, `{"error": "forbidden"}`},
		{"token, prefix of the right one", httpapi.RegistrationToken, [][2]string{{"X-Registration-Token", token[:10]}}, 401, `{"error": "forbidden"}`},
		{"token, basic scheme", httpapi.RegistrationToken, [][2]string{{"Authorization", "Basic " + token}}, 401, `{"error": "forbidden"}`},
		{"token, repeated header", httpapi.RegistrationToken, [][2]string{{"X-Registration-Token", token}, {"X-Registration-Token", token}}, 401, `{"error": "forbidden"}`},
		{"token, both headers", httpapi.RegistrationToken, [][2]string{{"X-Registration-Token", token}, {"Authorization", "Bearer " + token}}, 401, `{"error": "forbidden"}`},
		{"closed, no token", httpapi.RegistrationClosed, nil, 403, `{"error": "registration_closed"}`},
		{"closed, even with a token", httpapi.RegistrationClosed, [][2]string{{"X-Registration-Token", token}}, 403, `{"error": "registration_closed"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := httpapi.Options{Registration: tc.mode}
			if tc.mode == httpapi.RegistrationToken {
				opts.RegistrationToken = token
			}
			e := newExtEnv(t, opts)
			code, resp := e.call(t, "POST", "/register", tc.hdr, "")
			if code != tc.code || (tc.resp != "" && resp != tc.resp) {
				t.Fatalf("got %d %s, want %d %s", code, resp, tc.code, tc.resp)
			}
			want := "accounts=0"
			if code == http.StatusCreated {
				want = "accounts=1"
			}
			if got := e.snapshot(t); got != want {
				t.Fatalf("store: %s, want %s", got, want)
			}
		})
	}
}

func TestTokenModeNeedsAToken(t *testing.T) {
	if _, err := httpapi.New(httpapi.Options{Zone: extZone, Registration: httpapi.RegistrationToken}, nil); err == nil {
		t.Fatal("token mode without a token was accepted")
	}
}

// fakeClock is a settable clock for the rate limiter.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestRegisterRateLimit(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newExtEnv(t, httpapi.Options{
		RegisterRate:   2,
		RegisterPer:    time.Hour,
		Now:            clock.Now,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	from := func(addr string) [][2]string { return [][2]string{{"X-Forwarded-For", addr}} }
	e.register(t, "", from("192.0.2.1")...)
	e.register(t, "", from("192.0.2.1")...)
	before := e.snapshot(t)
	code, resp := e.call(t, "POST", "/register", from("192.0.2.1"), "")
	if code != http.StatusTooManyRequests || resp != `{"error": "rate_limited"}` {
		t.Fatalf("third registration: %d %s", code, resp)
	}
	if after := e.snapshot(t); after != before {
		t.Fatalf("store changed: %s -> %s", before, after)
	}
	// Another source (known through the trusted proxy) has its own budget.
	e.register(t, "", from("192.0.2.2")...)
	// Half an hour refills one of two per hour.
	clock.advance(30 * time.Minute)
	e.register(t, "", from("192.0.2.1")...)
	if code, _ := e.call(t, "POST", "/register", from("192.0.2.1"), ""); code != http.StatusTooManyRequests {
		t.Fatalf("after one refill, second registration: %d, want 429", code)
	}
}

// TestForgedForwardedFor is acme-dns's hole: it accepts an update when any
// X-Forwarded-For hop matches allowfrom. Here a client that is not behind a
// trusted proxy forges the header three ways, and behind a trusted proxy a
// forged left-most entry does not win over the real right-most hop.
func TestForgedForwardedFor(t *testing.T) {
	body := func(c httpapi.Credentials, n int) string {
		return `{"subdomain":"` + c.Subdomain + `","txt":"` + txt(n) + `"}`
	}
	forgeries := [][][2]string{
		{{"X-Forwarded-For", "198.51.100.7"}},
		{{"X-Forwarded-For", "198.51.100.7, 198.51.100.8"}},
		{{"X-Forwarded-For", "203.0.113.1"}, {"X-Forwarded-For", "198.51.100.7"}},
	}
	t.Run("untrusted peer", func(t *testing.T) {
		e := newExtEnv(t, httpapi.Options{}) // no trusted proxies
		c := e.register(t, `{"allowfrom":["198.51.100.0/24"]}`)
		accepted := 0
		for i, forged := range forgeries {
			hdr := append(apiHeaders(c), forged...)
			code, resp := e.call(t, "POST", "/update", hdr, body(c, i))
			if code != http.StatusUnauthorized || resp != `{"error": "forbidden"}` {
				accepted++
				t.Errorf("forgery %d: %d %s", i+1, code, resp)
			}
		}
		t.Logf("forged X-Forwarded-For from an untrusted peer: %d/%d accepted", accepted, len(forgeries))
		if got := e.values(t, c.Subdomain); len(got) != 0 {
			t.Fatalf("values %v", got)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		e := newExtEnv(t, httpapi.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		c := e.register(t, `{"allowfrom":["198.51.100.0/24"]}`)
		// The proxy appends the real client (203.0.113.9) after the forged entry.
		hdr := append(apiHeaders(c), [2]string{"X-Forwarded-For", "198.51.100.7, 203.0.113.9"})
		if code, resp := e.call(t, "POST", "/update", hdr, body(c, 1)); code != http.StatusUnauthorized {
			t.Fatalf("forged left-most entry accepted: %d %s", code, resp)
		}
		// The real client inside allowfrom, through the proxy.
		hdr = append(apiHeaders(c), [2]string{"X-Forwarded-For", "203.0.113.9, 198.51.100.7"})
		if code, resp := e.call(t, "POST", "/update", hdr, body(c, 2)); code != http.StatusOK {
			t.Fatalf("real client behind the proxy refused: %d %s", code, resp)
		}
		if got := e.values(t, c.Subdomain); !sameValues(got, txt(2)) {
			t.Fatalf("values %v", got)
		}
	})
}
