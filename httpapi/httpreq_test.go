package httpapi_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"github.com/go-acme/lego/v4/providers/dns/httpreq"

	"github.com/delegated/delegated/httpapi"
)

func legoProvider(t *testing.T, e *extEnv, mode string, c httpapi.Credentials) *httpreq.DNSProvider {
	t.Helper()
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpreq.NewDefaultConfig()
	cfg.Endpoint = u
	cfg.Mode = mode
	cfg.Username = c.Username
	cfg.Password = c.Password
	p, err := httpreq.NewDNSProviderConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dns01Value(keyAuth string) string {
	sum := sha256.Sum256([]byte(keyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestHTTPReqWithLego drives the endpoints with lego v4.35.2's own httpreq
// provider, unmodified, in default mode (CNAME following off, so the fqdn is
// the customer's _acme-challenge name) and in RAW mode.
func TestHTTPReqWithLego(t *testing.T) {
	// No CNAME lookups: lego would ask the system's resolvers, and tests
	// never leave loopback.
	t.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true")
	for _, mode := range []string{"", "RAW"} {
		t.Run("mode="+mode, func(t *testing.T) {
			e := newExtEnv(t, httpapi.Options{})
			c := e.register(t, "")
			p := legoProvider(t, e, mode, c)
			apex, wild := "token-apex.thumb", "token-wild.thumb"
			if err := p.Present("example.com", "token-apex", apex); err != nil {
				t.Fatal(err)
			}
			if err := p.Present("example.com", "token-wild", wild); err != nil {
				t.Fatal(err)
			}
			if got := e.values(t, c.Subdomain); !sameValues(got, dns01Value(apex), dns01Value(wild)) {
				t.Fatalf("after two presents: values %v", got)
			}
			if err := p.CleanUp("example.com", "token-apex", apex); err != nil {
				t.Fatal(err)
			}
			if got := e.values(t, c.Subdomain); !sameValues(got, dns01Value(wild)) {
				t.Fatalf("after cleanup: values %v, want only the wildcard's", got)
			}
			// Cleanup twice is fine (lego may retry).
			if err := p.CleanUp("example.com", "token-apex", apex); err != nil {
				t.Fatal(err)
			}
			// Wrong password: lego reports the failure.
			bad := c
			bad.Password = "x" + c.Password[1:]
			if bad.Password == c.Password {
				bad.Password = "y" + c.Password[1:]
			}
			if err := legoProvider(t, e, mode, bad).Present("example.com", "t", "t.k"); err == nil {
				t.Fatal("present with a wrong key succeeded")
			}
		})
	}
}

// TestHTTPReqFQDNForms covers the fqdn forms lego sends, byte for byte as
// its JSON encoder writes them (with the trailing newline).
func TestHTTPReqFQDNForms(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	c := e.register(t, "")
	other := e.register(t, "")
	auth := [][2]string{basicHeader(c.Username, c.Password)}
	cases := []struct {
		name, body string
		code       int
		resp       string
		want       []string // values after
	}{
		{"followed CNAME", `{"fqdn":"` + c.Subdomain + `.auth.example.org.","value":"` + txt(1) + `"}` + "\n",
			200, `{"txt": "` + txt(1) + `"}`, []string{txt(1)}},
		{"upper case, no trailing dot", `{"fqdn":"` + c.Subdomain + `.AUTH.example.org","value":"` + txt(2) + `"}`,
			200, `{"txt": "` + txt(2) + `"}`, []string{txt(1), txt(2)}},
		{"customer name", `{"fqdn":"_acme-challenge.www.example.com.","value":"` + txt(3) + `"}`,
			200, `{"txt": "` + txt(3) + `"}`, []string{txt(1), txt(2), txt(3)}},
		{"our name with the challenge prefix", `{"fqdn":"_acme-challenge.` + c.Subdomain + `.auth.example.org.","value":"` + txt(4) + `"}`,
			200, `{"txt": "` + txt(4) + `"}`, []string{txt(1), txt(2), txt(3), txt(4)}},
		{"another account's subdomain", `{"fqdn":"` + other.Subdomain + `.auth.example.org.","value":"` + txt(4) + `"}`,
			401, `{"error": "forbidden"}`, []string{txt(1), txt(2), txt(3), txt(4)}},
		{"below a subdomain", `{"fqdn":"x.` + c.Subdomain + `.auth.example.org.","value":"` + txt(4) + `"}`,
			400, `{"error": "bad_fqdn"}`, []string{txt(1), txt(2), txt(3), txt(4)}},
		{"zone apex", `{"fqdn":"auth.example.org.","value":"` + txt(4) + `"}`,
			400, `{"error": "bad_fqdn"}`, []string{txt(1), txt(2), txt(3), txt(4)}},
		{"neither form", `{"fqdn":"www.example.com.","value":"` + txt(4) + `"}`,
			400, `{"error": "bad_fqdn"}`, []string{txt(1), txt(2), txt(3), txt(4)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := e.call(t, "POST", "/present", auth, tc.body)
			if code != tc.code || resp != tc.resp {
				t.Fatalf("got %d %s, want %d %s", code, resp, tc.code, tc.resp)
			}
			if got := e.values(t, c.Subdomain); !sameValues(got, tc.want...) {
				t.Fatalf("values %v, want %v", got, tc.want)
			}
			if got := e.values(t, other.Subdomain); len(got) != 0 {
				t.Fatalf("other account changed: %v", got)
			}
		})
	}
	// cleanup by the followed-CNAME form removes exactly that value.
	code, resp := e.call(t, "POST", "/cleanup", auth, `{"fqdn":"`+c.Subdomain+`.auth.example.org.","value":"`+txt(2)+`"}`)
	if code != http.StatusOK || resp != `{"txt": "`+txt(2)+`"}` {
		t.Fatalf("cleanup: %d %s", code, resp)
	}
	if got := e.values(t, c.Subdomain); !sameValues(got, txt(1), txt(3), txt(4)) {
		t.Fatalf("after cleanup: %v", got)
	}
}

// TestHTTPReqAllowFrom: Basic auth goes through the same allowfrom check.
func TestHTTPReqAllowFrom(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	c := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	body := `{"fqdn":"_acme-challenge.example.com.","value":"` + txt(1) + `"}`
	code, resp := e.call(t, "POST", "/present", [][2]string{basicHeader(c.Username, c.Password)}, body)
	if code != http.StatusUnauthorized || resp != `{"error": "forbidden"}` {
		t.Fatalf("present from outside allowfrom: %d %s", code, resp)
	}
	if got := e.values(t, c.Subdomain); len(got) != 0 {
		t.Fatalf("values %v", got)
	}
}
