package httpapi_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delegated/delegated/httpapi"
)

// scrape fetches /metrics and returns its sample lines by series.
func scrape(t *testing.T, e *extEnv) map[string]string {
	t.Helper()
	code, body := e.call(t, "GET", "/metrics", nil, "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newExtEnv(t, httpapi.Options{Metrics: reg})
	c := e.register(t, "")
	e.mustUpdate(t, c, txt(1))
	bad := c
	bad.Password = strings.Repeat("x", 40)
	for range 2 {
		if code, _ := e.call(t, "POST", "/update", apiHeaders(bad), `{"subdomain":"`+c.Subdomain+`","txt":"`+txt(2)+`"}`); code != 401 {
			t.Fatalf("bad key: %d", code)
		}
	}
	if code, _ := e.call(t, "GET", "/nowhere", nil, ""); code != 404 {
		t.Fatal("unknown route")
	}

	m := scrape(t, e)
	want := map[string]string{
		`delegated_api_requests_total{route="register",status="201"}`: "1",
		`delegated_api_requests_total{route="update",status="200"}`:   "1",
		`delegated_api_requests_total{route="update",status="401"}`:   "2",
		`delegated_api_requests_total{route="other",status="404"}`:    "1",
		`delegated_api_auth_failures_total{route="update"}`:           "2",
		`delegated_accounts`: "1",
		`delegated_store_seconds_count{op="create_account"}`: "1",
		`delegated_store_seconds_count{op="add_value"}`:      "1",
	}
	for series, v := range want {
		if m[series] != v {
			t.Errorf("%s = %q, want %s", series, m[series], v)
		}
	}
	// Its value depends on how busy the machine running the test is.
	if _, ok := m["delegated_bcrypt_rescued_total"]; !ok {
		t.Error("delegated_bcrypt_rescued_total is not exported")
	}
	// The update with the right key ran one AccountByUsername; the two
	// wrong keys missed the cache and read the store too.
	if m[`delegated_store_seconds_count{op="account_by_username"}`] != "3" {
		t.Errorf("account_by_username observations = %q, want 3", m[`delegated_store_seconds_count{op="account_by_username"}`])
	}
}

// TestNoMetricsRouteWithoutRegistry: /metrics exists only when asked for.
func TestNoMetricsRouteWithoutRegistry(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	if code, body := e.call(t, "GET", "/metrics", nil, ""); code != 404 || body != `{"error": "not_found"}` {
		t.Fatalf("got %d %s", code, body)
	}
}

// TestHealthStoreClosed: /health reports a store that cannot serve.
func TestHealthStoreClosed(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	if code, _ := e.call(t, "GET", "/health", nil, ""); code != http.StatusOK {
		t.Fatalf("healthy: %d", code)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	code, body := e.call(t, "GET", "/health", nil, "")
	if code != http.StatusServiceUnavailable || body != `{"error": "store_unavailable"}` {
		t.Fatalf("closed store: %d %s", code, body)
	}
}
