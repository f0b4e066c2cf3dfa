package dnsserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

// The test zone. Everything the golden files show comes from here and from
// the accounts testEnv creates through a real store.
const (
	testOrigin = "auth.example.org."
	subValues  = "d420c923-bbd7-4056-ab64-c3ca54c9b3cf" // two live values
	subEmpty   = "7b2f4b8e-5c1a-4f0e-9d3a-2b6c8e1f0a11" // registered, no value
	subBig     = "3f6a9c1e-8b7d-4e2a-a1c5-9d0b7e6f4c22" // 30 values: needs TCP
	ownLabel   = "_acme-challenge"                      // the service's own challenge name
	ioTimeout  = 3 * time.Second
)

var testRecords = []string{
	"auth.example.org. 3600 IN A 127.0.0.1",
	"auth.example.org. 3600 IN AAAA ::1",
	`auth.example.org. 3600 IN TXT "v=static; case Kept As Written"`,
	"ns1.auth.example.org. 3600 IN A 127.0.0.2",
	"ns1.auth.example.org. 3600 IN AAAA ::2",
	"auth.example.org. 3600 IN NS ns2.other.example.",
	"www.auth.example.org. 3600 IN CNAME auth.example.org.",
}

func testZoneConfig(t testing.TB) ZoneConfig {
	t.Helper()
	var rrs []dns.RR
	for _, line := range testRecords {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		rrs = append(rrs, rr)
	}
	return ZoneConfig{
		Origin:     testOrigin,
		NSName:     "ns1.auth.example.org.",
		NSAdmin:    "hostmaster.auth.example.org.",
		Records:    rrs,
		TXTTTL:     1,
		SOATTL:     300,
		SOAMinimum: 60,
		NSTTL:      3600,
	}
}

// value returns the i-th deterministic challenge value (43 characters, like
// a real base64url SHA-256 digest).
func value(sub string, i int) string {
	v := fmt.Sprintf("%s-value-%02d-%s", sub[:8], i, strings.Repeat("x", 43))
	return v[:43]
}

type testEnv struct {
	store *store.Store
	view  *View
	srv   *Server
	addr  string
}

// newTestEnv opens a real SQLite store in a temp dir, registers the test
// accounts and their values, builds the view by Follow (the production
// path) and starts a Server on 127.0.0.1:0.
func newTestEnv(t testing.TB, opts Options) *testEnv {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(ctx, "sqlite3", filepath.Join(t.TempDir(), "delegated.db"), store.Options{ValuesPerAccount: 40, Logger: log})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	for i, sub := range []string{subValues, subEmpty, subBig, ownLabel} {
		if err := st.CreateAccount(ctx, store.Account{Username: fmt.Sprintf("user-%d", i), KeyHash: "not-a-real-hash", Subdomain: sub}); err != nil {
			t.Fatalf("create account %s: %v", sub, err)
		}
	}
	view, stop, err := Follow(ctx, st, time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatalf("follow store: %v", err)
	}
	t.Cleanup(stop)
	// Values go in after Follow, so they reach the view by subscription.
	add := func(sub string, n int) {
		for i := range n {
			if err := st.AddValue(ctx, sub, value(sub, i)); err != nil {
				t.Fatalf("add value: %v", err)
			}
		}
	}
	add(subValues, 2)
	add(subBig, 30)
	add(ownLabel, 1)

	if len(opts.Listen) == 0 {
		opts.Listen = []string{"127.0.0.1:0"}
	}
	if opts.Logger == nil {
		opts.Logger = log
	}
	srv, err := New(opts, testZoneConfig(t), view)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &testEnv{store: st, view: view, srv: srv, addr: srv.Addrs()[0]}
}

// dial opens a client connection of network "udp" or "tcp".
func dial(t testing.TB, network, addr string) *dns.Conn {
	t.Helper()
	c, err := dns.DialTimeout(network, addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	c.UDPSize = dns.MaxMsgSize
	t.Cleanup(func() { c.Close() })
	return c
}

// exchangeRaw sends raw bytes and returns the first reply whose ID is id.
func exchangeRaw(t testing.TB, c *dns.Conn, raw []byte, id uint16) *dns.Msg {
	t.Helper()
	if _, err := c.Write(raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readReply(t, c, id)
}

func readReply(t testing.TB, c *dns.Conn, id uint16) *dns.Msg {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		if err := c.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("read reply %d: %v", id, err)
		}
		if r.Id == id {
			return r
		}
		t.Fatalf("reply with id %d, want %d:\n%v", r.Id, id, r)
	}
}

func exchange(t testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	raw, err := m.Pack()
	if err != nil {
		t.Fatalf("pack query: %v", err)
	}
	return exchangeRaw(t, dial(t, network, addr), raw, m.Id)
}

var serialRE = regexp.MustCompile(`(SOA\s+\S+\s+\S+\s+)\d+`)

// render is the golden form of a reply: header, flags and every section,
// with the SOA serial (which depends on when the zone loaded) masked.
func render(r *dns.Msg) string {
	var b strings.Builder
	rcode := dns.RcodeToString[r.Rcode]
	if r.Rcode == dns.RcodeBadVers {
		rcode = "BADVERS" // 16 is BADSIG in TSIG, BADVERS with EDNS
	}
	fmt.Fprintf(&b, "opcode %s rcode %s\n", dns.OpcodeToString[r.Opcode], rcode)
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{r.Response, "qr"}, {r.Authoritative, "aa"}, {r.Truncated, "tc"}, {r.RecursionDesired, "rd"},
		{r.RecursionAvailable, "ra"}, {r.Zero, "z"}, {r.AuthenticatedData, "ad"}, {r.CheckingDisabled, "cd"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	fmt.Fprintf(&b, "flags %s\n", strings.Join(flags, " "))
	b.WriteString(";; question\n")
	for _, q := range r.Question {
		fmt.Fprintf(&b, "%s %s %s\n", q.Name, dns.ClassToString[q.Qclass], dns.TypeToString[q.Qtype])
	}
	section := func(title string, rrs []dns.RR) {
		fmt.Fprintf(&b, ";; %s\n", title)
		for _, rr := range rrs {
			if opt, ok := rr.(*dns.OPT); ok {
				fmt.Fprintf(&b, "OPT udp=%d version=%d do=%t options=%d\n", opt.UDPSize(), opt.Version(), opt.Do(), len(opt.Option))
				continue
			}
			b.WriteString(serialRE.ReplaceAllString(strings.ReplaceAll(rr.String(), "\t", " "), "${1}SERIAL"))
			b.WriteByte('\n')
		}
	}
	section("answer", r.Answer)
	section("authority", r.Ns)
	section("additional", r.Extra)
	return b.String()
}

// freeUDPAddr is for tests that need a second listen address.
func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
