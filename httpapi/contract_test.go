package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/store"
	"github.com/delegated/delegated/store/storetest"
)

const testZone = "auth.example.org"

type testEnv struct {
	st  *store.Store
	api *API
	url string
}

// newTestEnv starts the API on a real SQLite store and a real loopback
// listener (IPv4 unless addr says otherwise).
func newTestEnv(t *testing.T, listen string) *testEnv {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite3", t.TempDir()+"/test.db", store.Options{ValuesPerAccount: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// The minimum bcrypt cost keeps the suite fast under -race; production
	// cost is enforced by config (>= 10) and checked in TestRegisterHashCost.
	api, err := New(Options{Zone: testZone + ".", BcryptCost: bcrypt.MinCost}, st)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &testEnv{st: st, api: api, url: srv.URL}
}

type registered struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Fulldomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

func (e *testEnv) do(t *testing.T, method, path, contentType, body string, headers map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
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
	return resp.StatusCode, resp.Header, string(b)
}

func (e *testEnv) register(t *testing.T, body string) registered {
	t.Helper()
	status, _, resp := e.do(t, "POST", "/register", "", body, nil)
	if status != http.StatusCreated {
		t.Fatalf("register %q: status %d, body %s", body, status, resp)
	}
	var r registered
	if err := json.Unmarshal([]byte(resp), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *testEnv) update(t *testing.T, r registered, txt string) (int, string) {
	t.Helper()
	status, _, body := e.do(t, "POST", "/update", "application/json",
		fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, r.Subdomain, txt),
		map[string]string{"X-Api-User": r.Username, "X-Api-Key": r.Password})
	return status, body
}

func (e *testEnv) values(t *testing.T, subdomain string) []string {
	t.Helper()
	vs, err := storetest.Values(context.Background(), e.st, subdomain)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func (e *testEnv) accounts(t *testing.T) int {
	t.Helper()
	n, err := e.st.CountAccounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var (
	uuidV4   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	apiKeyRe = regexp.MustCompile(`^[A-Za-z0-9_-]{40}$`)
)

// txtValue returns a valid 43-character DNS-01 value distinct per n.
func txtValue(n int) string {
	s := fmt.Sprintf("%043d", n)
	return "v" + s[1:]
}

func TestRegisterReplyIsByteCompatible(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	status, hdr, body := e.do(t, "POST", "/register", "", "", nil)
	if status != http.StatusCreated {
		t.Fatalf("status %d, want exactly 201", status)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if strings.Contains(body, "\n") {
		t.Errorf("body spans lines (acme.sh parses it line by line): %q", body)
	}
	var r registered
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"username":%q,"password":%q,"fulldomain":%q,"subdomain":%q,"allowfrom":[]}`,
		r.Username, r.Password, r.Subdomain+"."+testZone, r.Subdomain)
	if body != want {
		t.Errorf("body\n got %s\nwant %s", body, want)
	}
	if !uuidV4.MatchString(r.Username) || !uuidV4.MatchString(r.Subdomain) {
		t.Errorf("username %q / subdomain %q are not lower-case UUID v4", r.Username, r.Subdomain)
	}
	if !apiKeyRe.MatchString(r.Password) {
		t.Errorf("password %q is not 40 chars of [A-Za-z0-9_-]", r.Password)
	}
	if strings.HasSuffix(r.Fulldomain, ".") {
		t.Errorf("fulldomain %q has a trailing dot", r.Fulldomain)
	}
}

// TestRegisterBodies: the forms real clients send.
func TestRegisterBodies(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	cases := []struct {
		name, contentType, body string
		allowFrom               []string
	}{
		{"empty body, no content type (certbot hook)", "", "", []string{}},
		{"empty object", "application/json", "{}", []string{}},
		{"null", "application/json", "null", []string{}},
		{"whitespace", "application/json", " \n", []string{}},
		{"lower-case key", "application/json", `{"allowfrom":["192.0.2.0/24"]}`, []string{"192.0.2.0/24"}},
		{"capitalised key (old Go clients)", "application/json", `{"AllowFrom":["192.0.2.0/24"]}`, []string{"192.0.2.0/24"}},
		{"form content type (acme.sh, Posh-ACME)", "application/x-www-form-urlencoded", `{"allowfrom":["10.0.0.0/8"]}`, []string{"10.0.0.0/8"}},
		{"host bits allowed", "", `{"allowfrom":["192.168.100.1/24"]}`, []string{"192.168.100.1/24"}},
		{"IPv6 in brackets", "", `{"allowfrom":["[2001:db8::]/32"]}`, []string{"2001:db8::/32"}},
		{"unknown keys ignored", "", `{"allowfrom":[],"extra":1}`, []string{}},
		{"null allowfrom", "", `{"allowfrom":null}`, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := e.do(t, "POST", "/register", c.contentType, c.body, nil)
			if status != http.StatusCreated {
				t.Fatalf("status %d body %s", status, body)
			}
			var r registered
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(r.AllowFrom) != fmt.Sprint(c.allowFrom) || r.AllowFrom == nil {
				t.Errorf("allowfrom %#v, want %#v", r.AllowFrom, c.allowFrom)
			}
			if !strings.Contains(body, `"allowfrom":[`) {
				t.Errorf("allowfrom is not an array: %s", body)
			}
		})
	}
}

func TestRegisterHashCost(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite3", t.TempDir()+"/test.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	api, err := New(Options{Zone: testZone}, st)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	api.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/register", nil))
	var r registered
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	acct, err := st.AccountByUsername(ctx, r.Username)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := bcrypt.Cost([]byte(acct.KeyHash))
	if err != nil || cost < 10 {
		t.Fatalf("stored key hash cost %d (%v), want >= 10", cost, err)
	}
	if acct.KeyHash == r.Password || strings.Contains(acct.KeyHash, r.Password) {
		t.Fatal("the key is stored in clear")
	}
}

func TestUpdateServesValueAndEchoesIt(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	r := e.register(t, "")
	txt := txtValue(1)
	status, body := e.update(t, r, txt)
	if status != http.StatusOK {
		t.Fatalf("status %d body %s, want exactly 200", status, body)
	}
	if body != `{"txt": "`+txt+`"}` {
		t.Errorf("body %s", body)
	}
	if got := e.values(t, r.Subdomain); len(got) != 1 || got[0] != txt {
		t.Errorf("stored values %v", got)
	}
}

func TestUpdateRequestForms(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	r := e.register(t, "")
	cases := []struct {
		name, contentType, body string
		headers                 map[string]string
	}{
		{"capitalised keys", "application/json", `{"Subdomain":%q,"Txt":%q}`, nil},
		{"form content type", "application/x-www-form-urlencoded", `{"subdomain":%q,"txt":%q}`, nil},
		{"no content type", "", `{"subdomain":%q,"txt":%q}`, nil},
		{"upper-case username", "", `{"subdomain":%q,"txt":%q}`, map[string]string{"X-Api-User": strings.ToUpper(r.Username)}},
		{"braced username", "", `{"subdomain":%q,"txt":%q}`, map[string]string{"X-Api-User": "{" + r.Username + "}"}},
		{"urn username", "", `{"subdomain":%q,"txt":%q}`, map[string]string{"X-Api-User": "urn:uuid:" + r.Username}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{"X-Api-User": r.Username, "X-Api-Key": r.Password}
			for k, v := range c.headers {
				h[k] = v
			}
			txt := txtValue(100 + i)
			status, _, body := e.do(t, "POST", "/update", c.contentType, fmt.Sprintf(c.body, r.Subdomain, txt), h)
			if status != http.StatusOK || body != `{"txt": "`+txt+`"}` {
				t.Fatalf("status %d body %s", status, body)
			}
		})
	}
}

// TestUpdateErrors: every error row of the contract, with the exact status
// and body, and the store unchanged afterwards.
func TestUpdateErrors(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	r := e.register(t, "")
	other := e.register(t, "")
	limited := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	good := txtValue(7)
	if status, body := e.update(t, r, good); status != 200 {
		t.Fatalf("seed update: %d %s", status, body)
	}
	wrongKey := []byte(r.Password)
	wrongKey[0] ^= 1
	body := func(sub, txt string) string { return fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, sub, txt) }
	forbidden := `{"error": "forbidden"}`
	cases := []struct {
		name       string
		user, key  string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"no headers", "", "", body(r.Subdomain, txtValue(8)), 401, forbidden},
		{"username not a uuid", "nobody", r.Password, body(r.Subdomain, txtValue(8)), 401, forbidden},
		{"unknown user", "8a6ee7c8-4c4a-4a8d-9f0a-3a1c2f1f0e55", r.Password, body(r.Subdomain, txtValue(8)), 401, forbidden},
		{"wrong key", r.Username, string(wrongKey), body(r.Subdomain, txtValue(8)), 401, forbidden},
		{"short key", r.Username, r.Password[:39], body(r.Subdomain, txtValue(8)), 401, forbidden},
		{"key with bad characters", r.Username, r.Password[:39] + "!", body(r.Subdomain, txtValue(8)), 401, forbidden},
		{"another account's subdomain", r.Username, r.Password, body(other.Subdomain, txtValue(8)), 401, forbidden},
		{"source address not allowed", limited.Username, limited.Password, body(limited.Subdomain, txtValue(8)), 401, forbidden},
		{"txt too short", r.Username, r.Password, body(r.Subdomain, good[:42]), 400, `{"error": "bad_txt"}`},
		{"txt too long", r.Username, r.Password, body(r.Subdomain, good+"A"), 400, `{"error": "bad_txt"}`},
		{"txt not base64url", r.Username, r.Password, body(r.Subdomain, good[:42]+"+"), 400, `{"error": "bad_txt"}`},
		{"txt missing", r.Username, r.Password, fmt.Sprintf(`{"subdomain":%q}`, r.Subdomain), 400, `{"error": "bad_txt"}`},
		{"malformed json", r.Username, r.Password, `{"subdomain":`, 400, `{"error": "malformed_json_payload"}`},
		{"wrong types", r.Username, r.Password, `{"subdomain":1,"txt":2}`, 400, `{"error": "malformed_json_payload"}`},
		{"trailing garbage", r.Username, r.Password, body(r.Subdomain, txtValue(8)) + "x", 400, `{"error": "malformed_json_payload"}`},
		{"oversized body", r.Username, r.Password, `{"subdomain":"` + strings.Repeat("a", maxBodyBytes) + `"}`, 413, `{"error": "payload_too_large"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{}
			if c.user != "" {
				h["X-Api-User"] = c.user
			}
			if c.key != "" {
				h["X-Api-Key"] = c.key
			}
			status, hdr, got := e.do(t, "POST", "/update", "application/json", c.body, h)
			if status != c.wantStatus || got != c.wantBody {
				t.Errorf("got %d %s, want %d %s", status, got, c.wantStatus, c.wantBody)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			for _, acct := range []registered{r, other, limited} {
				want := []string(nil)
				if acct.Username == r.Username {
					want = []string{good}
				}
				if got := e.values(t, acct.Subdomain); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("store changed: %s has %v, want %v", acct.Subdomain, got, want)
				}
			}
		})
	}
}

func TestDuplicateCredentialHeaders(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	r := e.register(t, "")
	req, _ := http.NewRequest("POST", e.url+"/update", strings.NewReader(fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, r.Subdomain, txtValue(1))))
	req.Header.Add("X-Api-User", r.Username)
	req.Header.Add("X-Api-User", r.Username)
	req.Header.Set("X-Api-Key", r.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || string(b) != `{"error": "forbidden"}` {
		t.Fatalf("duplicate X-Api-User: %d %s", resp.StatusCode, b)
	}
	if got := e.values(t, r.Subdomain); len(got) != 0 {
		t.Fatalf("store changed: %v", got)
	}
}

func TestRegisterErrors(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	cases := []struct {
		name, body string
		wantStatus int
		wantBody   string
	}{
		{"malformed json", `{"allowfrom":`, 400, `{"error": "malformed_json_payload"}`},
		{"allowfrom not an array", `{"allowfrom":"10.0.0.0/8"}`, 400, `{"error": "malformed_json_payload"}`},
		{"invalid cidr", `{"allowfrom":["10.0.0.0/8","not-a-cidr"]}`, 400, `{"error": "invalid_allowfrom_cidr"}`},
		{"address without prefix length", `{"allowfrom":["10.0.0.1"]}`, 400, `{"error": "invalid_allowfrom_cidr"}`},
		{"prefix too long", `{"allowfrom":["10.0.0.0/33"]}`, 400, `{"error": "invalid_allowfrom_cidr"}`},
		{"oversized body", `{"allowfrom":["` + strings.Repeat("1", maxBodyBytes) + `"]}`, 413, `{"error": "payload_too_large"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, got := e.do(t, "POST", "/register", "application/json", c.body, nil)
			if status != c.wantStatus || got != c.wantBody {
				t.Errorf("got %d %s, want %d %s", status, got, c.wantStatus, c.wantBody)
			}
			if n := e.accounts(t); n != 0 {
				t.Errorf("store changed: %d accounts", n)
			}
		})
	}
}

// TestTwoUpdatesBothServedAndRotation: example.com and *.example.com share
// one name, so two updates in a row must both stay; the (per_account+1)th
// pushes out the oldest by sequence, even within one second.
func TestTwoUpdatesBothServedAndRotation(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0") // per_account = 3
	r := e.register(t, "")
	for i := 1; i <= 2; i++ {
		if status, body := e.update(t, r, txtValue(i)); status != 200 {
			t.Fatalf("update %d: %d %s", i, status, body)
		}
	}
	if got := e.values(t, r.Subdomain); fmt.Sprint(got) != fmt.Sprint([]string{txtValue(1), txtValue(2)}) {
		t.Fatalf("after two updates: %v", got)
	}
	// A duplicate is not stored twice; it becomes the newest.
	e.update(t, r, txtValue(1))
	if got := e.values(t, r.Subdomain); fmt.Sprint(got) != fmt.Sprint([]string{txtValue(2), txtValue(1)}) {
		t.Fatalf("after duplicate: %v", got)
	}
	e.update(t, r, txtValue(3))
	e.update(t, r, txtValue(4))
	if got := e.values(t, r.Subdomain); fmt.Sprint(got) != fmt.Sprint([]string{txtValue(1), txtValue(3), txtValue(4)}) {
		t.Fatalf("after rotation: %v", got)
	}
}

func TestAllowFrom(t *testing.T) {
	for _, tc := range []struct {
		name, listen, allow string
		want                int
	}{
		{"IPv4 peer inside", "127.0.0.1:0", `["127.0.0.0/8"]`, 200},
		{"IPv4 peer, host bits in CIDR", "127.0.0.1:0", `["127.1.2.3/8"]`, 200},
		{"IPv4 peer outside", "127.0.0.1:0", `["192.0.2.0/24"]`, 401},
		{"IPv4 peer, one of several", "127.0.0.1:0", `["192.0.2.0/24","127.0.0.1/32"]`, 200},
		{"IPv6 peer with brackets", "[::1]:0", `["[::1]/128"]`, 200},
		{"IPv6 peer outside", "[::1]:0", `["2001:db8::/32"]`, 401},
		{"IPv6 peer, IPv4-only list", "[::1]:0", `["127.0.0.0/8"]`, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.listen, "[") {
				if ln, err := net.Listen("tcp", tc.listen); err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				} else {
					ln.Close()
				}
			}
			e := newTestEnv(t, tc.listen)
			r := e.register(t, `{"allowfrom":`+tc.allow+`}`)
			status, body := e.update(t, r, txtValue(1))
			if status != tc.want {
				t.Fatalf("status %d body %s, want %d", status, body, tc.want)
			}
		})
	}
}

// TestWarmUpdateSkipsBcrypt: a verified credential is cached, and the cache
// keeps refusing a wrong key for a cached user.
func TestWarmUpdateSkipsBcrypt(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	r := e.register(t, "")
	if status, _ := e.update(t, r, txtValue(1)); status != 200 {
		t.Fatal("first update failed")
	}
	e.api.auth.mu.Lock()
	_, cached := e.api.auth.byUser[r.Username]
	e.api.auth.mu.Unlock()
	if !cached {
		t.Fatal("verified credential not cached")
	}
	// Occupy every bcrypt worker, with no rescue for an hour: a warm
	// update must not need one.
	e.api.auth.bcrypt.setStallAfter(time.Hour)
	release := make(chan struct{})
	var busy []<-chan error
	for range e.api.opts.BcryptConcurrency {
		busy = append(busy, hold(e.api.auth.bcrypt, release))
	}
	status, body := e.update(t, r, txtValue(2))
	close(release)
	for _, done := range busy {
		<-done
	}
	if status != 200 {
		t.Fatalf("warm update: %d %s", status, body)
	}
	bad := r
	bad.Password = strings.Repeat("x", 40)
	if status, _ := e.update(t, bad, txtValue(3)); status != 401 {
		t.Fatalf("wrong key for a cached user: %d", status)
	}
}

func TestHealth(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	if status, _, body := e.do(t, "GET", "/health", "", "", nil); status != 200 || body != "" {
		t.Fatalf("healthy: %d %q", status, body)
	}
	e.st.Close()
	status, _, body := e.do(t, "GET", "/health", "", "", nil)
	if status != http.StatusServiceUnavailable || body != `{"error": "store_unavailable"}` {
		t.Fatalf("store closed: %d %s", status, body)
	}
}

func TestUnknownRouteIsJSON(t *testing.T) {
	e := newTestEnv(t, "127.0.0.1:0")
	for _, c := range []struct{ method, path string }{{"GET", "/nope"}, {"GET", "/register"}} {
		status, _, body := e.do(t, c.method, c.path, "", "", nil)
		var v map[string]string
		if err := json.Unmarshal([]byte(body), &v); err != nil || v["error"] == "" || status < 400 {
			t.Errorf("%s %s: %d %q is not a JSON error", c.method, c.path, status, body)
		}
	}
}
