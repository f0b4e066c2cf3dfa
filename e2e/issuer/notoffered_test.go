package e2eissuer_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	e2e "github.com/delegated/delegated/e2e/issuer"
)

// withoutChallenge passes Pebble's answers on with the challenges of type
// typ taken out of every authorization: a CA that does not offer that
// method (Pebble offers every DNS method for every name).
func withoutChallenge(typ string) func(http.Handler) http.Handler {
	return func(pebble http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/authZ/") {
				pebble.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			pebble.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			var authz map[string]any
			if rec.Code == http.StatusOK && json.Unmarshal(body, &authz) == nil {
				var kept []any
				for _, c := range authz["challenges"].([]any) {
					if c.(map[string]any)["type"] != typ {
						kept = append(kept, c)
					}
				}
				authz["challenges"] = kept
				if b, err := json.Marshal(authz); err == nil {
					body = b
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

// TestMethodNotOffered: when the CA does not offer the chosen method for
// an authorization, the attempt fails saying so and naming what it offers.
func TestMethodNotOffered(t *testing.T) {
	s := e2e.Start(t, e2e.Options{CAFront: withoutChallenge("dns-account-01"), DelegationRecheck: "1h", IssuerExtra: "retry_attempts = 1"})
	out, code := s.CLI("issue", "--cert-name", "www", "--challenge", "dns-account-01", "-d", "www.example.test", "--no-wait")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	s.SetCNAMEs(matches(accountRecordRE, out))
	out, code = s.CLI("retry", "--cert-name", "www")
	t.Logf("delegated retry --cert-name www\n%s", out)
	// Pebble lists the challenges in a random order.
	m := regexp.MustCompile(`the CA does not offer dns-account-01 for www\.example\.test \(it offers ([a-z0-9, -]+)\)`).FindStringSubmatch(out)
	if code == 0 || m == nil {
		t.Fatalf("exit %d, want a failure saying the CA does not offer dns-account-01", code)
	}
	offered := strings.Split(m[1], ", ")
	slices.Sort(offered)
	if want := []string{"dns-01", "dns-persist-01", "http-01", "tls-alpn-01"}; !slices.Equal(offered, want) {
		t.Errorf("offered %v, want %v", offered, want)
	}
}
