package e2eissuer_test

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// caFront stands between the daemon and the first CA: it counts requests,
// can drop every connection (the CA is down) and can answer the next new
// order with 429 rateLimited and a Retry-After, as Let's Encrypt does when
// an account's new-order limit is reached.
type caFront struct {
	mu         sync.Mutex
	down       bool
	retryAfter int // seconds; > 0: the next new order is refused
	requests   int
	limited    int
}

func (f *caFront) front(pebble http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests++
		down, ra := f.down, 0
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" && f.retryAfter > 0 {
			ra, f.retryAfter = f.retryAfter, 0
			f.limited++
		}
		f.mu.Unlock()
		switch {
		case down:
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				http.Error(w, "cannot drop the connection: "+err.Error(), http.StatusTeapot)
				return
			}
			conn.Close()
		case ra > 0:
			w.Header().Set("Retry-After", strconv.Itoa(ra))
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders recently (injected by the test)","status":429}`)
		default:
			pebble.ServeHTTP(w, r)
		}
	})
}

func (f *caFront) set(down bool, retryAfter int) {
	f.mu.Lock()
	f.down, f.retryAfter = down, retryAfter
	f.mu.Unlock()
}

func (f *caFront) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// verifiesAgainst reports whether c's fullchain.pem verifies against ca's
// issuing root.
func verifiesAgainst(t *testing.T, c e2e.Cert, ca *harness.Pebble) error {
	t.Helper()
	certs := readCerts(t, c.Paths.FullChain)
	roots, err := ca.RootPool()
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}

// caMetrics returns the delegated_issuer_ca_* lines of /metrics.
func caMetrics(t *testing.T, s *e2e.Stack) []string {
	t.Helper()
	resp, err := http.Get(s.APIURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "delegated_issuer_ca_") {
			out = append(out, sc.Text())
		}
	}
	return out
}

// metric returns the value of the sample line starting with series.
func metric(lines []string, series string) (float64, bool) {
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// waitUnpaused waits until /metrics says the first CA is no longer skipped.
func waitUnpaused(t *testing.T, s *e2e.Stack, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, 200*time.Millisecond, "first CA back in service", func() error {
		v, ok := metric(caMetrics(t, s), `delegated_issuer_ca_skipped_until_timestamp_seconds{ca="first"}`)
		if !ok || v != 0 {
			return fmt.Errorf("first skipped until %v", v)
		}
		return nil
	})
}

// waitPlanned waits until name's renewal is planned (its CA's renewal
// information asked).
func waitPlanned(t *testing.T, s *e2e.Stack, name string) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, name+" renewal planned", func() error {
		c, err := s.Certificate(name)
		if err == nil && c.RenewAt == "" {
			err = fmt.Errorf("no renewal planned yet")
		}
		return err
	})
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("%s: want %q in:\n%s", what, w, out)
		}
	}
}

// TestSeveralCAs: two Pebbles, each with its own root, configured as
// [[issuer.ca]] "first" (behind a proxy that can drop connections or
// inject a 429) and "second".
//   - The first unreachable: issuance succeeds through the second within
//     the same attempt, and fullchain.pem verifies against the second's
//     root.
//   - The first back: renew --force returns to the first.
//   - --ca second never touches the first.
//   - A CAA record allowing only the second's identity skips the first,
//     saying so.
//   - A 429 with Retry-After from the first sends the next certificates
//     straight to the second until the time passes.
func TestSeveralCAs(t *testing.T) {
	front := &caFront{}
	s := e2e.Start(t, e2e.Options{
		CAFront: front.front, SecondCA: true,
		// Both Pebbles announce the same caaIdentities: set them apart.
		CAAIdentities:     [2][]string{{"first.example"}, {"second.example"}},
		IssuerExtra:       `ca_backoff = "2s"`,
		DelegationRecheck: "1h",
	})
	out, code := s.CLI("issue", "--no-wait", "--cert-name", "fallback", "-d", "example.test", "-d", "*.example.test")
	if code != 0 {
		t.Fatalf("issue --no-wait: exit %d\n%s", code, out)
	}
	cnames := records(t, out)
	s.SetCNAMEs(cnames)

	// 1. The first drops every connection: the attempt moves on to the
	// second once the first's in-attempt retries are spent.
	front.set(true, 0)
	started := time.Now()
	out, code = s.CLI("retry", "--cert-name", "fallback")
	t.Logf("first unreachable: delegated retry --cert-name fallback (%.1fs, exit %d)\n%s", time.Since(started).Seconds(), code, out)
	if code != 0 {
		t.Fatalf("retry with the first CA down: exit %d", code)
	}
	mustContain(t, "fallback transcript", out, "ca ✗ first failed on its side (unreachable), paused until", "ca ✓ ordering from second", "is active")
	c, err := s.Certificate("fallback")
	if err != nil {
		t.Fatal(err)
	}
	if c.CA != "second" {
		t.Fatalf("certificates --json: ca %q, want second", c.CA)
	}
	if err := verifiesAgainst(t, c, s.Pebble2); err != nil {
		t.Fatalf("fullchain.pem does not verify against the second's root: %v", err)
	}
	if err := verifiesAgainst(t, c, s.Pebble); err == nil {
		t.Fatal("fullchain.pem verifies against the first's root too: the two Pebbles share a root")
	}
	if front.count() == 0 {
		t.Fatal("the first CA was never asked")
	}

	// 2. The first back (and its back-off over): renew --force returns to
	// the preferred CA.
	front.set(false, 0)
	waitUnpaused(t, s, 30*time.Second)
	out, code = s.CLI("renew", "--cert-name", "fallback", "--force")
	t.Logf("first back: delegated renew --cert-name fallback --force (exit %d)\n%s", code, out)
	if code != 0 {
		t.Fatalf("renew --force: exit %d", code)
	}
	mustContain(t, "renewal", out, "ca ✓ ordering from first")
	if c, err = s.Certificate("fallback"); err != nil {
		t.Fatal(err)
	}
	if c.CA != "first" {
		t.Fatalf("after renewal: ca %q, want first", c.CA)
	}
	if err := verifiesAgainst(t, c, s.Pebble); err != nil {
		t.Fatalf("renewed fullchain.pem does not verify against the first's root: %v", err)
	}
	out, _ = s.CLI("certificates")
	mustContain(t, "certificates", out, "  CA: first\n")

	// 3. Pinned to the second: not one request reaches the first. The
	// renewed certificate's renewal information comes from the first (its
	// CA) in the background: wait for it, so that it is not counted.
	waitPlanned(t, s, "fallback")
	before := front.count()
	out, code = s.CLI("issue", "--cert-name", "pinned", "--ca", "second", "-d", "example.test")
	t.Logf("delegated issue --cert-name pinned --ca second -d example.test (exit %d)\n%s", code, out)
	if code != 0 {
		t.Fatalf("issue --ca second: exit %d", code)
	}
	if n := front.count() - before; n != 0 {
		t.Fatalf("issue --ca second sent %d requests to the first CA", n)
	}
	if c, err = s.Certificate("pinned"); err != nil || c.CA != "second" || c.CAPin != "second" {
		t.Fatalf("pinned certificate: %+v, %v", c, err)
	}
	out, code = s.CLI("issue", "--cert-name", "pinned", "--ca", "nosuch", "-d", "example.test")
	if code == 0 || !strings.Contains(out, `no CA named "nosuch"; configured: first, second`) {
		t.Fatalf("issue --ca nosuch: exit %d\n%s", code, out)
	}

	// 4. CAA allows only the second: the first is skipped, with the reason,
	// without a request.
	s.SetCustomerZone(cnames, `@ CAA 0 issue "second.example"`)
	before = front.count()
	out, code = s.CLI("issue", "--cert-name", "caa", "-d", "example.test")
	t.Logf("CAA allows only second.example: delegated issue --cert-name caa -d example.test (exit %d)\n%s", code, out)
	if code != 0 {
		t.Fatalf("issue under CAA: exit %d", code)
	}
	mustContain(t, "CAA", out, "caa ✗ first skipped: CAA at example.test. allows only second.example to issue for example.test, and this CA is first.example", "ca ✓ ordering from second")
	if n := front.count() - before; n != 0 {
		t.Fatalf("the first CA, forbidden by CAA, got %d requests", n)
	}
	if c, err = s.Certificate("caa"); err != nil || c.CA != "second" {
		t.Fatalf("CAA certificate: %+v, %v", c, err)
	}
	s.SetCustomerZone(cnames)

	// 5. The first answers a new order with 429 and Retry-After: that
	// certificate falls back to the second in the same attempt, the next
	// goes straight to the second, and once the time has passed the first
	// is asked again.
	const retryAfter = 8
	front.set(false, retryAfter)
	limitedAt := time.Now()
	out, code = s.CLI("issue", "--cert-name", "limited", "-d", "example.test")
	t.Logf("429 from the first: delegated issue --cert-name limited -d example.test (exit %d)\n%s", code, out)
	if code != 0 {
		t.Fatalf("issue while the first rate-limits: exit %d", code)
	}
	mustContain(t, "rate limit", out, "ca ✗ first failed on its side (rate_limited), paused until", "ca ✓ ordering from second")
	paused := caMetrics(t, s)
	t.Logf("per-CA metrics while the first is paused:\n%s", strings.Join(paused, "\n"))
	if until, _ := metric(paused, `delegated_issuer_ca_skipped_until_timestamp_seconds{ca="first"}`); until < float64(limitedAt.Unix()+retryAfter-1) || until > float64(time.Now().Unix()+retryAfter+1) {
		t.Errorf("first skipped until %v, want its Retry-After (%ds) from the 429 at %d", until, retryAfter, limitedAt.Unix())
	}
	before = front.count()
	out, code = s.CLI("issue", "--cert-name", "next", "-d", "example.test")
	t.Logf("within Retry-After: delegated issue --cert-name next -d example.test (%.1fs after the 429, exit %d)\n%s", time.Since(limitedAt).Seconds(), code, out)
	if code != 0 {
		t.Fatalf("issue within Retry-After: exit %d", code)
	}
	if time.Since(limitedAt) < retryAfter*time.Second {
		mustContain(t, "paused CA", out, "ca ✗ skipped: first paused until", "(rate_limited: ")
		if n := front.count() - before; n != 0 {
			t.Fatalf("within Retry-After the first got %d requests", n)
		}
	} else {
		t.Logf("the machine took longer than Retry-After (%ds) for one issuance; the skip is not observable", retryAfter)
	}
	if c, err = s.Certificate("next"); err != nil || c.CA != "second" && time.Since(limitedAt) < retryAfter*time.Second {
		t.Fatalf("certificate within Retry-After: %+v, %v", c, err)
	}
	waitUnpaused(t, s, 30*time.Second)
	if since := time.Since(limitedAt); since < retryAfter*time.Second {
		t.Fatalf("the first was back %.1fs after its 429 with Retry-After %d", since.Seconds(), retryAfter)
	}
	out, code = s.CLI("issue", "--cert-name", "after", "-d", "example.test")
	t.Logf("after Retry-After: delegated issue --cert-name after -d example.test (exit %d)\n%s", code, out)
	if code != 0 {
		t.Fatalf("issue after Retry-After: exit %d", code)
	}
	if c, err = s.Certificate("after"); err != nil || c.CA != "first" {
		t.Fatalf("after Retry-After: %+v, %v", c, err)
	}

	// Pinning a certificate of the first to the second re-issues it
	// there; revoking it goes to the second, its CA, not to the first.
	// Its renewal planning (ARI at the first) comes first.
	waitPlanned(t, s, "after")
	before = front.count()
	out, code = s.CLI("issue", "--cert-name", "after", "--ca", "second", "-d", "example.test")
	if code != 0 {
		t.Fatalf("issue --ca second on a certificate of the first: exit %d\n%s", code, out)
	}
	if c, err = s.Certificate("after"); err != nil || c.CA != "second" {
		t.Fatalf("re-pinned certificate: %+v, %v", c, err)
	}
	if err := verifiesAgainst(t, c, s.Pebble2); err != nil {
		t.Fatalf("re-pinned fullchain.pem does not verify against the second's root: %v", err)
	}
	out, code = s.CLI("revoke", "--cert-name", "after", "--reason", "superseded")
	if code != 0 {
		t.Fatalf("revoke: exit %d\n%s", code, out)
	}
	serial, ok := new(big.Int).SetString(c.Serial, 16)
	if !ok {
		t.Fatalf("serial %q", c.Serial)
	}
	if st, err := s.Pebble2.CertStatus(serial); err != nil || st.Status != "Revoked" {
		t.Fatalf("the second's status of the revoked certificate: %+v, %v", st, err)
	}
	if n := front.count() - before; n != 0 {
		t.Fatalf("re-pinning and revoking a certificate of the second sent %d requests to the first", n)
	}

	// The per-CA metrics.
	lines := caMetrics(t, s)
	t.Logf("per-CA metrics:\n%s", strings.Join(lines, "\n"))
	for series, want := range map[string]float64{
		`delegated_issuer_ca_failures_total{ca="first",kind="unreachable"}`:  1,
		`delegated_issuer_ca_failures_total{ca="first",kind="rate_limited"}`: 1,
		`delegated_issuer_ca_skips_total{ca="first",reason="caa"}`:           1,
		`delegated_issuer_ca_attempts_total{ca="first"}`:                     4, // down, renewal, 429, after
		`delegated_issuer_ca_skipped_until_timestamp_seconds{ca="first"}`:    0,
		`delegated_issuer_ca_skipped_until_timestamp_seconds{ca="second"}`:   0,
	} {
		if got, ok := metric(lines, series); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if got, _ := metric(lines, `delegated_issuer_ca_attempts_total{ca="second"}`); got < 4 {
		t.Errorf("second's attempts %v, want at least 4 (fallback, pinned, caa, limited)", got)
	}
	var certs []e2e.Cert
	out, _ = s.CLI("certificates", "--json")
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		t.Logf("certificate %s: ca %s", c.Name, c.CA)
	}
}
