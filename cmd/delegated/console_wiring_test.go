package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/delegated/delegated/httpapi"
)

// TestConsoleWiring: the console is mounted only with an operator token,
// and its session opens the operator API on the HTTP listener.
func TestConsoleWiring(t *testing.T) {
	const issuerSection = "[issuer]\ndirectory = \"https://127.0.0.1:1/dir\"\nresolvers = [\"127.0.0.1:1\"]\n"
	for _, token := range []string{"", "console-wiring-token"} {
		t.Run("token="+token, func(t *testing.T) {
			t.Setenv(envOperatorToken, token)
			cfg, st, isvc := testIssuerService(t, t.TempDir(), issuerSection)
			opts := httpapi.Options{Zone: cfg.Zone.Domain}
			if err := isvc.wire(&opts); err != nil {
				t.Fatal(err)
			}
			api, err := httpapi.New(opts, st)
			if err != nil {
				t.Fatal(err)
			}
			defer api.Shutdown(context.Background())
			srv := httptest.NewServer(api.Handler())
			defer srv.Close()
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

			resp, err := client.Get(srv.URL + "/console/login")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if token == "" {
				if opts.Console != nil || resp.StatusCode != http.StatusNotFound {
					t.Fatalf("no token: console mounted (%d)", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Fatalf("login page: %d %v", resp.StatusCode, resp.Header)
			}
			resp, err = client.PostForm(srv.URL+"/console/login", url.Values{"token": {token}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cookies := resp.Cookies()
			if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
				t.Fatalf("login: %d, cookies %v", resp.StatusCode, cookies)
			}
			for _, withCookie := range []bool{false, true} {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/certificates", nil)
				want := http.StatusUnauthorized
				if withCookie {
					req.AddCookie(cookies[0])
					want = http.StatusOK
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("GET /v1/certificates (cookie %v): %d, want %d", withCookie, resp.StatusCode, want)
				}
			}
		})
	}
}
