package dnsserver

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestPrefixKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.200", true},
		{"192.0.2.1", "192.0.3.1", false},
		{"192.0.2.1", "::ffff:192.0.2.9", true},
		{"2001:db8:0:1::1", "2001:db8:0:ff::2", true},
		{"2001:db8:0:1::1", "2001:db8:0:100::1", false},
		{"0.0.0.1", "::1", false},
	}
	for _, tt := range tests {
		got := prefixKey(netip.MustParseAddr(tt.a)) == prefixKey(netip.MustParseAddr(tt.b))
		if got != tt.same {
			t.Errorf("%s and %s in one prefix: %t, want %t", tt.a, tt.b, got, tt.same)
		}
	}
}

// TestRateLimit: with rate 3 and slip 2, within one second a source gets
// three answers, then every second limited reply is a truncated slip and the
// others are dropped; the next second it is answered again, and TCP is
// never limited. The clock is the test's, so nothing depends on timing.
func TestRateLimit(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1_700_000_000, 0).UnixNano())
	env := newTestEnv(t, Options{RRLRate: 3, RRLSlip: 2, UDPReaders: 1, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	c := dial(t, "udp", env.addr)
	query := func(id uint16) []byte {
		m := new(dns.Msg)
		m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
		m.Id = id
		return pack(t, m)
	}
	for id := uint16(1); id <= 9; id++ {
		if _, err := c.Write(query(id)); err != nil {
			t.Fatal(err)
		}
	}
	// One socket and one reader: replies come in query order, so reading
	// up to the slip of query 9 has seen everything 1..9 produced.
	type seen struct {
		tc      bool
		answers int
	}
	got := map[uint16]seen{}
	for {
		if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("after replies %v: %v", got, err)
		}
		got[r.Id] = seen{r.Truncated, len(r.Answer)}
		if r.Id == 9 {
			break
		}
	}
	want := map[uint16]seen{1: {false, 2}, 2: {false, 2}, 3: {false, 2}, 5: {true, 0}, 7: {true, 0}, 9: {true, 0}}
	if len(got) != len(want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("reply %d: %+v, want %+v", id, got[id], w)
		}
	}
	// TCP is exempt.
	m := new(dns.Msg)
	m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
	if r := exchange(t, "tcp", env.addr, m); len(r.Answer) != 2 || r.Truncated {
		t.Errorf("tcp while limited: %v", r)
	}
	// A new second, a new budget.
	now.Add(int64(time.Second))
	if r := exchangeRaw(t, c, query(10), 10); len(r.Answer) != 2 || r.Truncated {
		t.Errorf("next second: %v", r)
	}
}

// TestRateLimitOffByDefault: many queries, all answered.
func TestRateLimitOffByDefault(t *testing.T) {
	env := newTestEnv(t, Options{})
	c := dial(t, "udp", env.addr)
	for id := uint16(1); id <= 200; id++ {
		m := new(dns.Msg)
		m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
		m.Id = id
		if r := exchangeRaw(t, c, pack(t, m), id); r.Truncated || len(r.Answer) != 2 {
			t.Fatalf("query %d: %v", id, r)
		}
	}
}
