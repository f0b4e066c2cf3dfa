package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/store"
	"github.com/delegated/delegated/store/storetest"
)

const extZone = "auth.example.org"

// extEnv is the API on a real SQLite file behind a real loopback listener.
type extEnv struct {
	st       *store.Store
	api      *httpapi.API
	url      string
	accounts []httpapi.Credentials
}

func newExtEnv(t *testing.T, opts httpapi.Options) *extEnv {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	st, err := store.Open(context.Background(), "sqlite3", t.TempDir()+"/ext.db", store.Options{ValuesPerAccount: 4, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	if opts.Zone == "" {
		opts.Zone = extZone
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.MinCost // fast under -race; cost is config's job
	}
	api, err := httpapi.New(opts, st)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &extEnv{st: st, api: api, url: srv.URL}
}

// call sends one request; hdr values are added in order, so a header can
// be repeated.
func (e *extEnv) call(t *testing.T, method, path string, hdr [][2]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hdr {
		req.Header.Add(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// register makes an account through the API and remembers it for snapshots.
func (e *extEnv) register(t *testing.T, body string, hdr ...[2]string) httpapi.Credentials {
	t.Helper()
	code, resp := e.call(t, "POST", "/register", hdr, body)
	if code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, resp)
	}
	var c httpapi.Credentials
	if err := json.Unmarshal([]byte(resp), &c); err != nil {
		t.Fatal(err)
	}
	e.accounts = append(e.accounts, c)
	return c
}

func apiHeaders(c httpapi.Credentials) [][2]string {
	return [][2]string{{"X-Api-User", c.Username}, {"X-Api-Key", c.Password}}
}

func basicHeader(user, pass string) [2]string {
	return [2]string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// values is the account's live values in the store (nil when it is gone).
func (e *extEnv) values(t *testing.T, sub string) []string {
	t.Helper()
	vs, err := storetest.Values(context.Background(), e.st, sub)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// snapshot renders everything the store holds for the known accounts, to
// compare before and after a refused request.
func (e *extEnv) snapshot(t *testing.T) string {
	t.Helper()
	n, err := e.st.CountAccounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "accounts=%d", n)
	for _, c := range e.accounts {
		_, err := e.st.AccountByUsername(context.Background(), c.Username)
		fmt.Fprintf(&b, " %s:exists=%v:values=%v", c.Subdomain[:8], err == nil, e.values(t, c.Subdomain))
	}
	return b.String()
}

// txt returns a distinct valid DNS-01 value.
func txt(n int) string {
	s := fmt.Sprintf("%043d", n)
	return strings.ReplaceAll(s, "0", "A")
}

func sameValues(got []string, want ...string) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
