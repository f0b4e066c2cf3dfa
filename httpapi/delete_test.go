package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/store"
	"github.com/delegated/delegated/store/storetest"
)

func (e *extEnv) mustUpdate(t *testing.T, c httpapi.Credentials, value string) {
	t.Helper()
	code, resp := e.call(t, "POST", "/update", apiHeaders(c), `{"subdomain":"`+c.Subdomain+`","txt":"`+value+`"}`)
	if code != http.StatusOK {
		t.Fatalf("update: %d %s", code, resp)
	}
}

func TestDeleteOneValue(t *testing.T) {
	for _, form := range []struct{ method, path string }{{"DELETE", "/update"}, {"POST", "/delete"}} {
		t.Run(form.method+" "+form.path, func(t *testing.T) {
			e := newExtEnv(t, httpapi.Options{})
			c := e.register(t, "")
			e.mustUpdate(t, c, txt(1))
			e.mustUpdate(t, c, txt(2))
			code, resp := e.call(t, form.method, form.path, apiHeaders(c), `{"subdomain":"`+c.Subdomain+`","txt":"`+txt(1)+`"}`)
			if code != http.StatusOK || resp != `{"txt": "`+txt(1)+`"}` {
				t.Fatalf("delete: %d %s", code, resp)
			}
			if got := e.values(t, c.Subdomain); !sameValues(got, txt(2)) {
				t.Fatalf("values %v, want only the second", got)
			}
			// Deleting a value that is not there succeeds (idempotent).
			if code, _ := e.call(t, form.method, form.path, apiHeaders(c), `{"subdomain":"`+c.Subdomain+`","txt":"`+txt(1)+`"}`); code != http.StatusOK {
				t.Fatalf("second delete: %d", code)
			}
		})
	}
}

func TestClearValues(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	c := e.register(t, "")
	other := e.register(t, "")
	e.mustUpdate(t, c, txt(1))
	e.mustUpdate(t, c, txt(2))
	e.mustUpdate(t, other, txt(3))
	code, resp := e.call(t, "POST", "/clear", apiHeaders(c), `{"subdomain":"`+c.Subdomain+`"}`)
	if code != http.StatusOK || resp != `{"subdomain": "`+c.Subdomain+`"}` {
		t.Fatalf("clear: %d %s", code, resp)
	}
	if got := e.values(t, c.Subdomain); len(got) != 0 {
		t.Fatalf("values after clear: %v", got)
	}
	if got := e.values(t, other.Subdomain); !sameValues(got, txt(3)) {
		t.Fatalf("other account's values changed: %v", got)
	}
}

func TestDeregister(t *testing.T) {
	for _, form := range []struct{ method, path string }{{"POST", "/deregister"}, {"DELETE", "/register"}} {
		t.Run(form.method+" "+form.path, func(t *testing.T) {
			e := newExtEnv(t, httpapi.Options{})
			c := e.register(t, "")
			e.mustUpdate(t, c, txt(1)) // warms the credential cache too
			code, resp := e.call(t, form.method, form.path, apiHeaders(c), `{"subdomain":"`+c.Subdomain+`"}`)
			if code != http.StatusOK || resp != `{"subdomain": "`+c.Subdomain+`"}` {
				t.Fatalf("deregister: %d %s", code, resp)
			}
			if _, err := storetest.Values(context.Background(), e.st, c.Subdomain); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("account still in the store: %v", err)
			}
			// The cached credential is gone with the account.
			code, resp = e.call(t, "POST", "/update", apiHeaders(c), `{"subdomain":"`+c.Subdomain+`","txt":"`+txt(2)+`"}`)
			if code != http.StatusUnauthorized || resp != `{"error": "forbidden"}` {
				t.Fatalf("update after deregister: %d %s", code, resp)
			}
		})
	}
}

// TestDeleteRefusals: wrong key, wrong subdomain and wrong source are the
// same 401, and nothing changes.
func TestDeleteRefusals(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	c := e.register(t, "")
	other := e.register(t, "")
	limited := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	e.mustUpdate(t, c, txt(1))
	e.mustUpdate(t, other, txt(2))
	wrongKey := c
	wrongKey.Password = "A" + c.Password[1:]
	if wrongKey.Password == c.Password {
		wrongKey.Password = "B" + c.Password[1:]
	}
	cases := []struct {
		name   string
		method string
		path   string
		creds  httpapi.Credentials
		body   string
	}{
		{"delete with wrong key", "POST", "/delete", wrongKey, `{"subdomain":"` + c.Subdomain + `","txt":"` + txt(1) + `"}`},
		{"delete another account's value", "POST", "/delete", c, `{"subdomain":"` + other.Subdomain + `","txt":"` + txt(2) + `"}`},
		{"clear another account", "POST", "/clear", c, `{"subdomain":"` + other.Subdomain + `"}`},
		{"deregister another account", "POST", "/deregister", c, `{"subdomain":"` + other.Subdomain + `"}`},
		{"deregister from outside allowfrom", "POST", "/deregister", limited, `{"subdomain":"` + limited.Subdomain + `"}`},
		{"clear from outside allowfrom", "POST", "/clear", limited, `{"subdomain":"` + limited.Subdomain + `"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(t)
			code, resp := e.call(t, tc.method, tc.path, apiHeaders(tc.creds), tc.body)
			if code != http.StatusUnauthorized || resp != `{"error": "forbidden"}` {
				t.Fatalf("got %d %s", code, resp)
			}
			if after := e.snapshot(t); after != before {
				t.Fatalf("store changed:\n before %s\n after  %s", before, after)
			}
		})
	}
}

// TestSyncSkipsAllowFrom: /sync changes nothing, so an operator's CLI on
// the server may call it for an account limited to the customer's network;
// it still needs the key.
func TestSyncSkipsAllowFrom(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	c := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	var (
		mu        sync.Mutex
		published []store.SubdomainState
	)
	cancel := e.st.Subscribe(func(st store.SubdomainState) {
		mu.Lock()
		published = append(published, st)
		mu.Unlock()
	})
	defer cancel()
	code, resp := e.call(t, "POST", "/sync", apiHeaders(c), `{"subdomain":"`+c.Subdomain+`"}`)
	if code != http.StatusOK || resp != `{"subdomain": "`+c.Subdomain+`"}` {
		t.Fatalf("sync: %d %s", code, resp)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(published) != 1 || published[0].Subdomain != c.Subdomain || published[0].Deleted {
		t.Fatalf("sync published %+v, want the account's state once", published)
	}
	bad := c
	bad.Password = "Z" + c.Password[1:]
	if bad.Password == c.Password {
		bad.Password = "Y" + c.Password[1:]
	}
	if code, _ := e.call(t, "POST", "/sync", apiHeaders(bad), `{"subdomain":"`+c.Subdomain+`"}`); code != http.StatusUnauthorized {
		t.Fatalf("sync with a wrong key: %d", code)
	}
}
