package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name   string
		remote string
		xff    []string
		want   string // "" means not ok
	}{
		{"untrusted peer, no header", "192.0.2.1:5000", nil, "192.0.2.1"},
		{"untrusted peer forges one hop", "192.0.2.1:5000", []string{"198.51.100.7"}, "192.0.2.1"},
		{"untrusted peer forges a chain", "192.0.2.1:5000", []string{"198.51.100.7, 10.0.0.1"}, "192.0.2.1"},
		{"untrusted peer forges several lines", "192.0.2.1:5000", []string{"198.51.100.7", "198.51.100.8"}, "192.0.2.1"},
		{"untrusted peer, garbage header", "192.0.2.1:5000", []string{"not an address"}, "192.0.2.1"},
		{"trusted peer, no header", "127.0.0.1:5000", nil, "127.0.0.1"},
		{"trusted peer, one hop", "127.0.0.1:5000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"right-most untrusted hop wins over a forged left entry", "127.0.0.1:5000", []string{"198.51.100.7, 203.0.113.9"}, "203.0.113.9"},
		{"trusted hops are skipped", "127.0.0.1:5000", []string{"203.0.113.9, 10.1.2.3, 10.0.0.1"}, "203.0.113.9"},
		{"several header lines are one list", "127.0.0.1:5000", []string{"198.51.100.7", "203.0.113.9, 10.0.0.1"}, "203.0.113.9"},
		{"all hops trusted: left-most", "127.0.0.1:5000", []string{"10.0.0.2, 10.0.0.1"}, "10.0.0.2"},
		{"hop with port", "127.0.0.1:5000", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"IPv6 hop in brackets with port", "127.0.0.1:5000", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv6 hop in brackets", "127.0.0.1:5000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv4-mapped hop unmapped", "127.0.0.1:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"IPv6 trusted peer", "[fd00::1]:5000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4-mapped peer is trusted", "[::ffff:127.0.0.1]:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"garbage right of the client: unknown", "127.0.0.1:5000", []string{"203.0.113.9, bogus"}, ""},
		{"empty element: unknown", "127.0.0.1:5000", []string{"203.0.113.9,,10.0.0.1"}, ""},
		{"garbage left of the client is never reached", "127.0.0.1:5000", []string{"bogus, 203.0.113.9"}, "203.0.113.9"},
		{"zone in hop refused", "127.0.0.1:5000", []string{"fe80::1%eth0"}, ""},
		{"over-long chain refused", "127.0.0.1:5000", []string{strings.Repeat("10.0.0.1,", 40) + "10.0.0.1"}, ""},
		{"unparseable peer", "@", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := clientAddr(c.remote, c.xff, trusted)
			if c.want == "" {
				if ok {
					t.Fatalf("clientAddr = %v, want not ok", got)
				}
				return
			}
			if !ok || got != netip.MustParseAddr(c.want) {
				t.Fatalf("clientAddr = %v, %v; want %s", got, ok, c.want)
			}
		})
	}
}

func TestRateLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(2, time.Hour, func() time.Time { return now })
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	v6a := netip.MustParseAddr("2001:db8::1")
	v6b := netip.MustParseAddr("2001:db8::ffff") // same /64
	for i, want := range []bool{true, true, false, false} {
		if got := l.allow(a); got != want {
			t.Fatalf("attempt %d from a: allow = %v, want %v", i+1, got, want)
		}
	}
	if !l.allow(b) {
		t.Fatal("another address shares a's bucket")
	}
	if !l.allow(v6a) || !l.allow(v6b) || l.allow(v6a) {
		t.Fatal("an IPv6 /64 must share one bucket of 2")
	}
	now = now.Add(time.Hour / 2) // refills one token
	if !l.allow(a) || l.allow(a) {
		t.Fatal("half the period must refill exactly one token")
	}
}

func TestRateLimiterPruneBoundsMemory(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(1, time.Hour, func() time.Time { return now })
	l.maxBuckets = 100
	for i := range 1000 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if n := len(l.buckets); n > 100 {
		t.Fatalf("%d buckets kept, bound is 100", n)
	}
}

func TestRegistrationToken(t *testing.T) {
	cases := []struct {
		name string
		hdr  map[string][]string
		want string // "" = refused
	}{
		{"bearer", map[string][]string{"Authorization": {"Bearer s3cret"}}, "s3cret"},
		{"bearer lower case scheme", map[string][]string{"Authorization": {"bearer s3cret"}}, "s3cret"},
		{"custom header", map[string][]string{"X-Registration-Token": {"s3cret"}}, "s3cret"},
		{"none", nil, ""},
		{"basic scheme", map[string][]string{"Authorization": {"Basic czNjcmV0"}}, ""},
		{"bearer without token", map[string][]string{"Authorization": {"Bearer "}}, ""},
		{"two authorization lines", map[string][]string{"Authorization": {"Bearer a", "Bearer b"}}, ""},
		{"both headers", map[string][]string{"Authorization": {"Bearer s3cret"}, "X-Registration-Token": {"s3cret"}}, ""},
		{"empty custom header", map[string][]string{"X-Registration-Token": {"  "}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := registrationToken(c.hdr)
			if (c.want == "") == ok || got != c.want {
				t.Fatalf("registrationToken = %q, %v; want %q", got, ok, c.want)
			}
		})
	}
}

func TestClientSourceFunc(t *testing.T) {
	src := ClientSourceFunc([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	for _, tc := range []struct {
		remote, xff, want string
		ok                bool
	}{
		{"192.0.2.7:1", "", "192.0.2.7/32", true},
		{"[2001:db8::1]:1", "", "2001:db8::/64", true},
		{"[::ffff:192.0.2.7]:1", "", "192.0.2.7/32", true},
		{"10.1.1.1:1", "198.51.100.4", "198.51.100.4/32", true}, // through a trusted proxy
		{"192.0.2.7:1", "198.51.100.4", "192.0.2.7/32", true},   // an untrusted peer's header is ignored
		{"bad", "", "", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/console/login", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		got, ok := src(r)
		if ok != tc.ok || (ok && got.String() != tc.want) {
			t.Errorf("%s (X-Forwarded-For %q): %v %v, want %s %v", tc.remote, tc.xff, got, ok, tc.want, tc.ok)
		}
	}
}
