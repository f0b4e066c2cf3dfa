package issuer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/miekg/dns"

	"github.com/delegated/delegated/store"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	prob := func(typ string, status int) *acme.ProblemDetails {
		return &acme.ProblemDetails{Type: "urn:ietf:params:acme:error:" + typ, HTTPStatus: status}
	}
	tests := []struct {
		name       string
		err        error
		kind       string
		caSide     bool
		retryAfter time.Duration
	}{
		{"rate limited with Retry-After", fmt.Errorf("new order: %w", &acme.RateLimitedError{ProblemDetails: prob("rateLimited", 429), RetryAfter: "120"}), "rate_limited", true, 2 * time.Minute},
		{"rate limited without", &acme.RateLimitedError{ProblemDetails: prob("rateLimited", 429)}, "rate_limited", true, 0},
		{"badNonce storm", fmt.Errorf("finalize: %w", &acme.NonceError{ProblemDetails: prob("badNonce", 400)}), "bad_nonce", true, 0},
		{"5xx after retries", fmt.Errorf("new order: %w", prob("serverInternal", 503)), "server_error", true, 0},
		{"unreachable", fmt.Errorf("acme: directory x: %w", &url.Error{Op: "Get", URL: "https://ca/dir", Err: errors.New("connection refused")}), "unreachable", true, 0},
		{"bad certificate", &url.Error{Op: "Get", URL: "https://ca/dir", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, "tls", true, 0},
		{"too slow", fmt.Errorf("finalize: %w after 5m0s", errCATooSlow), "timeout", true, 0},
		{"rejectedIdentifier", fmt.Errorf("new order: %w", prob("rejectedIdentifier", 400)), "rejectedIdentifier", false, 0},
		{"caa", errors.Join(fmt.Errorf("authorization a: %w", prob("caa", 403))), "caa", false, 0},
		{"validation failed", fmt.Errorf("authorization a: invalid: %w", prob("unauthorized", 0)), "unauthorized", false, 0},
		{"odd problem type", &acme.ProblemDetails{Type: "about:blank", HTTPStatus: 400}, "other", false, 0},
		{"no CA involved", errors.New("store: disk full"), "other", false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := classify(tc.err, now)
			if f.kind != tc.kind || f.caSide != tc.caSide || f.retryAfter != tc.retryAfter {
				t.Fatalf("classify(%v) = %+v, want kind %s caSide %v retryAfter %s", tc.err, f, tc.kind, tc.caSide, tc.retryAfter)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"90", 90 * time.Second},
		{" 5 ", 5 * time.Second},
		{"0", time.Second},
		{"-3", time.Second},
		{now.Add(10 * time.Minute).Format(http.TimeFormat), 10 * time.Minute},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Second},
		{"999999999999", maxRetryAfter},
		{"soon", 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func caaRR(owner string, flag uint8, tag, value string) *dns.CAA {
	return &dns.CAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCAA, Class: dns.ClassINET}, Flag: flag, Tag: tag, Value: value}
}

func TestCAAForbids(t *testing.T) {
	le := []string{"letsencrypt.org"}
	zs := []string{"sectigo.com"}
	set := func(rrs ...*dns.CAA) map[string]caaSet {
		return map[string]caaSet{"example.com": {owner: "example.com.", records: rrs}}
	}
	tests := []struct {
		name    string
		sets    map[string]caaSet
		domains []string
		ids     []string
		want    string // substring of the reason; "" means allowed
	}{
		{"no records", map[string]caaSet{"example.com": {}}, []string{"example.com"}, zs, ""},
		{"lookup failed", map[string]caaSet{}, []string{"example.com"}, zs, ""},
		{"issue allows", set(caaRR("example.com.", 0, "issue", "letsencrypt.org")), []string{"example.com"}, le, ""},
		{"issue with parameters", set(caaRR("example.com.", 0, "issue", " LetsEncrypt.org. ; accounturi=https://x/acct/1")), []string{"example.com"}, le, ""},
		{"issue forbids", set(caaRR("example.com.", 0, "issue", "letsencrypt.org")), []string{"example.com"}, zs, "CAA at example.com. allows only letsencrypt.org to issue for example.com, and this CA is sectigo.com"},
		{"one of several", set(caaRR("example.com.", 0, "issue", "letsencrypt.org"), caaRR("example.com.", 0, "ISSUE", "sectigo.com")), []string{"example.com"}, zs, ""},
		{"empty issue forbids all", set(caaRR("example.com.", 0, "issue", ";")), []string{"example.com"}, le, "allows no CA"},
		{"iodef only", set(caaRR("example.com.", 0, "iodef", "mailto:x@example.com")), []string{"example.com"}, zs, ""},
		{"issuewild for wildcard", set(caaRR("example.com.", 0, "issue", "sectigo.com"), caaRR("example.com.", 0, "issuewild", "letsencrypt.org")), []string{"*.example.com"}, zs, "allows only letsencrypt.org to issue for *.example.com"},
		{"issuewild ignored for apex", set(caaRR("example.com.", 0, "issue", "sectigo.com"), caaRR("example.com.", 0, "issuewild", "letsencrypt.org")), []string{"example.com"}, zs, ""},
		{"wildcard falls back to issue", set(caaRR("example.com.", 0, "issue", "letsencrypt.org")), []string{"*.example.com"}, zs, "for *.example.com"},
		{"unknown critical tag", set(caaRR("example.com.", 128, "tbs", "x")), []string{"example.com"}, le, "critical property"},
		{"unknown non-critical tag", set(caaRR("example.com.", 0, "tbs", "x")), []string{"example.com"}, le, ""},
		{"CA without identities", set(caaRR("example.com.", 0, "issue", "letsencrypt.org")), []string{"example.com"}, nil, ""},
		{"second domain forbids", map[string]caaSet{"example.com": {}, "example.net": {owner: "net.", records: []*dns.CAA{caaRR("net.", 0, "issue", "letsencrypt.org")}}},
			[]string{"example.com", "example.net"}, zs, "CAA at net. allows only letsencrypt.org to issue for example.net"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := (&caaPolicy{sets: tc.sets}).forbids(tc.domains, tc.ids)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("forbids = %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeResolver answers CAA questions from records by owner name, follows
// CNAMEs as a recursive resolver does, and answers REFUSED for names under
// "refused.".
type fakeResolver struct {
	addr    string
	records map[string][]dns.RR
	asked   atomic.Int32
}

func startResolver(t *testing.T, records map[string][]dns.RR) *fakeResolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeResolver{addr: pc.LocalAddr().String(), records: records}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r.asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		if dns.IsSubDomain("refused.", name) {
			m.Rcode = dns.RcodeRefused
			w.WriteMsg(m)
			return
		}
		for hops := 0; hops < 8; hops++ {
			rrs := r.records[name]
			if len(rrs) == 1 && rrs[0].Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rrs[0])
				name = rrs[0].(*dns.CNAME).Target
				continue
			}
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Question[0].Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
			break
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return r
}

func TestRelevantCAA(t *testing.T) {
	r := startResolver(t, map[string][]dns.RR{
		"example.com.":            {caaRR("example.com.", 0, "issue", "letsencrypt.org")},
		"alias.example.com.":      {&dns.CNAME{Hdr: dns.RR_Header{Name: "alias.example.com.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET}, Target: "cdn.example.net."}},
		"cdn.example.net.":        {caaRR("cdn.example.net.", 0, "issue", "sectigo.com")},
		"own.deep.example.com.":   {caaRR("own.deep.example.com.", 0, "issue", ";")},
		"plain.example.org.":      nil,
		"x.refused.":              nil,
		"deeper.a.example.com.":   nil,
		"unrelated.example.com.":  {&dns.A{Hdr: dns.RR_Header{Name: "unrelated.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 1)}},
		"wild.sub.example.com.":   nil,
		"other.tld-has-caa.test.": nil,
		"tld-has-caa.test.":       nil,
		"test.":                   {caaRR("test.", 0, "issue", "example.net")},
	})
	c := &checker{resolvers: []string{r.addr}, timeout: 2 * time.Second}
	tests := []struct {
		name, owner, value, err string
	}{
		{"deeper.a.example.com", "example.com.", "letsencrypt.org", ""},
		{"unrelated.example.com", "example.com.", "letsencrypt.org", ""},
		{"alias.example.com", "alias.example.com.", "sectigo.com", ""},
		{"own.deep.example.com", "own.deep.example.com.", ";", ""},
		{"plain.example.org", "", "", ""},
		{"other.tld-has-caa.test", "test.", "example.net", ""},
		{"x.refused", "", "", "REFUSED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := c.relevantCAA(context.Background(), tc.name)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", set, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if set.owner != tc.owner || tc.owner != "" && (len(set.records) != 1 || set.records[0].Value != tc.value) {
				t.Fatalf("got %s %v, want %s %q", set.owner, set.records, tc.owner, tc.value)
			}
		})
	}
}

// fakeCA is an ACME server just far enough for an account and an order:
// newOrder answers what order says (a problem), and every request counts.
type fakeCA struct {
	srv      *httptest.Server
	caaIDs   []string
	orders   atomic.Int32
	requests atomic.Int32
	nonce    atomic.Int64
	order    func(w http.ResponseWriter)
}

func startFakeCA(t *testing.T, caaIDs []string, order func(w http.ResponseWriter)) *fakeCA {
	t.Helper()
	f := &fakeCA{caaIDs: caaIDs, order: order}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		base := "https://" + r.Host
		w.Header().Set("Replay-Nonce", fmt.Sprintf("nonce-%d", f.nonce.Add(1)))
		switch r.URL.Path {
		case "/dir":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"newNonce": base + "/nonce", "newAccount": base + "/account", "newOrder": base + "/order",
				"revokeCert": base + "/revoke", "keyChange": base + "/key",
				"meta": map[string]any{"caaIdentities": f.caaIDs},
			})
		case "/nonce":
			w.WriteHeader(http.StatusOK)
		case "/account":
			w.Header().Set("Location", base+"/account/1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"status":"valid"}`)
		case "/order":
			f.orders.Add(1)
			f.order(w)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func problem(status int, typ, detail string, header ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for k := 0; k+1 < len(header); k += 2 {
			w.Header().Set(header[k], header[k+1])
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"type": "urn:ietf:params:acme:error:" + typ, "detail": detail, "status": status})
	}
}

func (f *fakeCA) ca(name string, ids ...string) CA {
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	return CA{Name: name, Directory: f.srv.URL + "/dir", CARoots: pool, CAAIdentities: ids}
}

// twoCAs configures an issuer with the fake CAs "first" and "second",
// resolving CAA through resolver, with a one-minute back-off.
func twoCAs(first, second *fakeCA, resolver *fakeResolver) func(*Options) {
	return func(o *Options) {
		o.CAs = []CA{first.ca("first"), second.ca("second")}
		o.CABackoff = time.Minute
		o.Resolvers, o.ResolverTimeout = []string{resolver.addr}, time.Second
	}
}

// obtainOnce runs one attempt's choice of CA and order for c.
func obtainOnce(iss *Issuer, c store.Certificate, emit func(Event)) error {
	_, err := iss.obtainAny(context.Background(), &c, func(inFlight) error { return nil }, emit)
	return err
}

// TestFallback drives the CA choice against two fake CAs: the first
// rate-limits (429, Retry-After 120), the second refuses the names, a
// verdict about the request. The first is paused for everyone until its
// Retry-After passes and skipped meanwhile; a pinned certificate waits for
// it without counting a failure; the second's verdict ends the attempt
// without trying further; CAA skips a CA it forbids, saying so.
func TestFallback(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)}
	first := startFakeCA(t, []string{"first.test"}, problem(http.StatusTooManyRequests, "rateLimited", "too many new orders", "Retry-After", "120"))
	second := startFakeCA(t, []string{"second.test"}, problem(http.StatusBadRequest, "rejectedIdentifier", "no such names here"))
	resolver := startResolver(t, map[string][]dns.RR{
		"caa.example.com.": {caaRR("caa.example.com.", 0, "issue", "second.test")},
	})
	iss, st, _ := instance(t, newSharedDB(t, "sqlite"), "a", clock.Now, time.Minute, twoCAs(first, second, resolver))
	ctx := context.Background()
	var (
		mu     sync.Mutex
		events []string
	)
	emit := func(ev Event) {
		mu.Lock()
		events = append(events, fmt.Sprintf("%s ok=%v %s%s", ev.Step, ev.OK, ev.Detail, ev.Error))
		mu.Unlock()
	}
	took := func() string {
		mu.Lock()
		defer mu.Unlock()
		s := strings.Join(events, "\n")
		events = nil
		return s
	}
	run := func(c store.Certificate) error { return obtainOnce(iss, c, emit) }
	cert := store.Certificate{Name: "a", Domains: []string{"a.example.com", "*.a.example.com"}}

	// 1. The first rate-limits: paused 120 s for everyone; the second is
	// asked in the same attempt, and its verdict ends the attempt.
	err := run(cert)
	if err == nil || !strings.Contains(err.Error(), "second: new order") || !strings.Contains(err.Error(), "rejectedIdentifier") {
		t.Fatalf("attempt 1: %v", err)
	}
	ev := took()
	if !strings.Contains(ev, "ca ok=false first failed on its side (rate_limited), paused until 2026-12-07T08:02:00Z") || !strings.Contains(ev, "ca ok=true ordering from second") {
		t.Fatalf("attempt 1 events:\n%s", ev)
	}
	if first.orders.Load() != 1 || second.orders.Load() != 1 {
		t.Fatalf("orders: first %d second %d, want 1 and 1", first.orders.Load(), second.orders.Load())
	}
	states, err := st.CAStates(ctx)
	if err != nil || len(states) != 1 || states[0].Name != "first" || !states[0].PausedUntil.Equal(clock.Now().Add(2*time.Minute)) || states[0].Kind != "rate_limited" {
		t.Fatalf("CA states %+v, %v", states, err)
	}

	// 2. Within the pause the first is not asked at all.
	clock.Advance(time.Minute)
	before := first.requests.Load()
	if err := run(cert); err == nil || !strings.Contains(err.Error(), "rejectedIdentifier") {
		t.Fatalf("attempt 2: %v", err)
	}
	if ev := took(); !strings.Contains(ev, "ca ok=false skipped: first paused until 2026-12-07T08:02:00Z (rate_limited") {
		t.Fatalf("attempt 2 events:\n%s", ev)
	}
	if n := first.requests.Load() - before; n != 0 {
		t.Fatalf("the paused CA received %d requests", n)
	}

	// 3. Pinned to the paused CA: the attempt waits for it.
	pinned := cert
	pinned.CAPin = "first"
	err = run(pinned)
	var p *PausedError
	if !errors.As(err, &p) || !p.Until.Equal(clock.Now().Add(time.Minute)) || second.orders.Load() != 2 {
		t.Fatalf("pinned to a paused CA: %v (second's orders %d)", err, second.orders.Load())
	}
	took()

	// 4. Pinned to the second: the first is never touched, and the verdict
	// comes back.
	pinned.CAPin = "second"
	before = first.requests.Load()
	if err := run(pinned); err == nil || !strings.Contains(err.Error(), "rejectedIdentifier") {
		t.Fatalf("pinned to second: %v", err)
	}
	if n := first.requests.Load() - before; n != 0 {
		t.Fatalf("a certificate pinned to second sent %d requests to first", n)
	}
	took()

	// 5. Once Retry-After has passed the first is asked first again (and
	// rate-limits again).
	clock.Advance(61 * time.Second)
	if err := run(cert); err == nil {
		t.Fatal("attempt 5 succeeded")
	}
	if first.orders.Load() != 2 {
		t.Fatalf("after the pause the first got %d orders in all, want 2", first.orders.Load())
	}
	took()

	// 6. CAA at caa.example.com allows only second.test: the first is
	// skipped with the reason, before any request; the second is asked.
	clock.Advance(3 * time.Minute)
	before = first.orders.Load()
	caaCert := store.Certificate{Name: "c", Domains: []string{"caa.example.com"}}
	if err := run(caaCert); err == nil || !strings.Contains(err.Error(), "second: new order") {
		t.Fatalf("CAA attempt: %v", err)
	}
	if ev := took(); !strings.Contains(ev, "caa ok=false first skipped: CAA at caa.example.com. allows only second.test to issue for caa.example.com, and this CA is first.test") {
		t.Fatalf("CAA events:\n%s", ev)
	}
	if first.orders.Load() != before {
		t.Fatal("a CA the CAA forbids got an order")
	}
	// Pinned to the forbidden CA: nothing is ordered, the reason is given.
	caaCert.CAPin = "first"
	if err := run(caaCert); err == nil || !strings.Contains(err.Error(), "no CA may issue for these names: first skipped: CAA at caa.example.com.") {
		t.Fatalf("pinned to a CA the CAA forbids: %v", err)
	}

	// The counters behind /metrics.
	attempts, failures, skips := iss.cas[0].stats.snapshot()
	if attempts != 2 || failures["rate_limited"] != 2 || skips["paused"] != 2 || skips["caa"] != 2 {
		t.Errorf("first's counters: attempts %d failures %v skips %v", attempts, failures, skips)
	}
	attempts, failures, _ = iss.cas[1].stats.snapshot()
	if attempts != 5 || failures["rejectedIdentifier"] != 5 {
		t.Errorf("second's counters: attempts %d failures %v", attempts, failures)
	}
}

// FuzzParseRetryAfter: a CA's header never panics and never pauses a CA
// for less than nothing or more than maxRetryAfter.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "120", "0", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999", "1e3", " 7 "} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %s", v, d)
		}
	})
}

// FuzzCAAForbids: any CAA property (a customer's DNS is outside input)
// never panics, and an issue record naming exactly the CA's identity,
// alone, always allows it.
func FuzzCAAForbids(f *testing.F) {
	f.Add(uint8(0), "issue", "letsencrypt.org; accounturi=x", "letsencrypt.org")
	f.Add(uint8(128), "tbs", "", "x.example")
	f.Add(uint8(0), "issuewild", ";", "sectigo.com")
	f.Add(uint8(0), "ISSUE", " A.example. ", "a.example")
	f.Fuzz(func(t *testing.T, flag uint8, tag, value, id string) {
		p := &caaPolicy{sets: map[string]caaSet{"example.com": {owner: "example.com.", records: []*dns.CAA{caaRR("example.com.", flag, tag, value)}}}}
		p.forbids([]string{"example.com", "*.example.com"}, []string{id})
		id = issuerDomain(id)
		if id == "" {
			return
		}
		allow := &caaPolicy{sets: map[string]caaSet{"example.com": {owner: "example.com.", records: []*dns.CAA{caaRR("example.com.", 0, "issue", id)}}}}
		if why := allow.forbids([]string{"example.com", "*.example.com"}, []string{id}); why != "" {
			t.Fatalf("issue %q forbids %q: %s", id, id, why)
		}
	})
}

// TestDownCALastResort: a CA paused because it was down (here its
// directory answers 503) is skipped while another CA is asked, but still
// asked when it is the only one left; its failure then counts as a failed
// attempt rather than a wait, since its back-off is only a guess.
func TestDownCALastResort(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)}
	first := startFakeCA(t, nil, nil)
	first.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.requests.Add(1)
		problem(http.StatusServiceUnavailable, "serverInternal", "down for maintenance")(w)
	})
	second := startFakeCA(t, nil, problem(http.StatusBadRequest, "rejectedIdentifier", "no"))
	resolver := startResolver(t, nil)
	iss, st, _ := instance(t, newSharedDB(t, "sqlite"), "a", clock.Now, time.Minute, twoCAs(first, second, resolver))
	ctx := context.Background()
	run := func(c store.Certificate) error { return obtainOnce(iss, c, func(Event) {}) }
	cert := store.Certificate{Name: "a", Domains: []string{"a.example.com"}}
	if err := run(cert); err == nil || !strings.Contains(err.Error(), "second: new order") {
		t.Fatalf("first attempt: %v", err)
	}
	states, _ := st.CAStates(ctx)
	if len(states) != 1 || states[0].Kind != "server_error" || !states[0].PausedUntil.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("states after a 503: %+v", states)
	}
	// Paused and another CA available: not asked.
	before := first.requests.Load()
	if err := run(cert); err == nil || first.requests.Load() != before {
		t.Fatalf("second attempt: %v; the paused CA got %d requests", err, first.requests.Load()-before)
	}
	// Pinned to it: asked despite the pause, and the failure is an
	// ordinary one, not a wait; its back-off doubles.
	cert.CAPin = "first"
	err := run(cert)
	var p *PausedError
	if err == nil || errors.As(err, &p) || !strings.Contains(err.Error(), "no CA could issue: first failed on its side (server_error)") {
		t.Fatalf("pinned to a CA that is down: %v", err)
	}
	if first.requests.Load() == before {
		t.Fatal("the only CA left was not asked")
	}
	states, _ = st.CAStates(ctx)
	if states[0].Failures != 2 || !states[0].PausedUntil.Equal(clock.Now().Add(2*time.Minute)) {
		t.Fatalf("back-off after a second failure: %+v", states[0])
	}
}

// TestCAPauseShared: a rate limit one instance meets pauses the CA for
// another instance on the same database (the ca_states table): the other
// goes straight to the second CA without asking the first, and reports the
// pause in its state and metrics.
func TestCAPauseShared(t *testing.T) {
	eachDB(t, func(t *testing.T, db sharedDB) {
		clock := &fakeClock{now: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)}
		first := startFakeCA(t, nil, problem(http.StatusTooManyRequests, "rateLimited", "slow down", "Retry-After", "300"))
		second := startFakeCA(t, nil, problem(http.StatusBadRequest, "rejectedIdentifier", "no"))
		resolver := startResolver(t, nil)
		a, _, _ := instance(t, db, "a", clock.Now, time.Minute, twoCAs(first, second, resolver))
		b, _, _ := instance(t, db, "b", clock.Now, time.Minute, twoCAs(first, second, resolver))
		ctx := context.Background()
		run := func(iss *Issuer, name string) error {
			return obtainOnce(iss, store.Certificate{Name: name, Domains: []string{name + ".example.com"}}, func(Event) {})
		}
		if err := run(a, "x"); err == nil || first.orders.Load() != 1 {
			t.Fatalf("instance a: %v, first's orders %d", err, first.orders.Load())
		}
		before := first.requests.Load()
		if err := run(b, "y"); err == nil || !strings.Contains(err.Error(), "second:") {
			t.Fatalf("instance b: %v", err)
		}
		if n := first.requests.Load() - before; n != 0 {
			t.Fatalf("instance b sent %d requests to the CA instance a found rate-limited", n)
		}
		st := b.State(ctx)
		if len(st.CAs) != 2 || !st.CAs[0].PausedUntil.Equal(clock.Now().Add(5*time.Minute)) || st.CAs[0].Kind != "rate_limited" ||
			!st.CAs[1].PausedUntil.IsZero() || !st.PausedUntil.IsZero() {
			t.Fatalf("instance b's state: %+v", st)
		}
		_, _, skips := b.cas[0].stats.snapshot()
		if skips["paused"] != 1 {
			t.Fatalf("instance b's skips of first: %v", skips)
		}
	})
}
