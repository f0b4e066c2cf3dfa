package dnsserver

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestSipHash checks siphash24 against the reference vectors of the SipHash
// paper (key 00..0f, messages 00, 00 01, ..., of length 0 to 15 and 63).
func TestSipHash(t *testing.T) {
	var key [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	// vectors[n] is the output for the n-byte message, as the paper's
	// little-endian byte strings.
	vectors := map[int]string{
		0:  "310e0edd47db6f72",
		1:  "fd67dc93c539f874",
		2:  "5a4fa9d909806c0d",
		7:  "37d1018bf50002ab",
		8:  "6224939a79f5f593",
		9:  "b0e4a90bdf82009e",
		15: "e545be4961ca29a1",
		63: "724506eb4c328a95",
	}
	for n, want := range vectors {
		var got [8]byte
		binary.LittleEndian.PutUint64(got[:], siphash24(&key, msg[:n]))
		if hex.EncodeToString(got[:]) != want {
			t.Errorf("siphash24(%d bytes) = %x, want %s", n, got, want)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jarWith(t *testing.T, secrets ...string) *cookieJar {
	t.Helper()
	j := &cookieJar{}
	cs := &cookieSecrets{}
	for _, s := range secrets {
		cs.keys = append(cs.keys, [16]byte(mustHex(t, s)))
	}
	j.secrets.Store(cs)
	return j
}

func cookieOpt(hexCookie string) *dns.OPT {
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hexCookie}}
	return opt
}

// TestServerCookieRFC9018 checks the RFC 9018 appendix A examples: the same
// secret, client and time give the same cookie as BIND, Knot and NSD.
func TestServerCookieRFC9018(t *testing.T) {
	const secret = "e5e973e5a6b2a43f48e7dc849e37bfcf"
	ip := netip.MustParseAddr("198.51.100.100")
	cases := []struct {
		name    string
		query   string
		now     int64
		verdict cookieVerdict
		reply   string
	}{
		{"A.1 learning a new server cookie", "2464c4abcf10c957", 1559731985, cookieClientOnly,
			"2464c4abcf10c957010000005cf79f111f8130c3eee29480"},
		{"A.2 the same client renewing it after 40 minutes", "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559734385, cookieValid,
			"2464c4abcf10c957010000005cf7a871d4a564a1442aca77"},
		{"a fresh valid cookie is echoed", "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985 + 60, cookieValid,
			"2464c4abcf10c957010000005cf79f111f8130c3eee29480"},
		{"an hour and more is too old", "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985 + 3601, cookieClientOnly,
			"2464c4abcf10c95701000000" + fmt.Sprintf("%08x", 1559731985+3601)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := jarWith(t, secret)
			got, v := j.check(cookieOpt(c.query), ip, time.Unix(c.now, 0))
			if v != c.verdict {
				t.Errorf("verdict %s, want %s", v, c.verdict)
			}
			if got == nil || len(got.Cookie) < len(c.reply) || got.Cookie[:len(c.reply)] != c.reply {
				t.Errorf("reply cookie %v, want %s", got, c.reply)
			}
		})
	}
	// A cookie made with the previous secret is still valid after a
	// rotation, and the reply carries one made with the new secret.
	j := jarWith(t, "00112233445566778899aabbccddeeff", secret)
	got, v := j.check(cookieOpt("2464c4abcf10c957010000005cf79f111f8130c3eee29480"), ip, time.Unix(1559731985+60, 0))
	if v != cookieValid || got == nil {
		t.Fatalf("after rotation: verdict %s", v)
	}
	// Another client address does not verify.
	if _, v := jarWith(t, secret).check(cookieOpt("2464c4abcf10c957010000005cf79f111f8130c3eee29480"), netip.MustParseAddr("198.51.100.101"), time.Unix(1559731985, 0)); v != cookieClientOnly {
		t.Errorf("another address: verdict %s, want client-only", v)
	}
}

func TestCookieMalformed(t *testing.T) {
	j := jarWith(t, "e5e973e5a6b2a43f48e7dc849e37bfcf")
	for _, c := range []string{"", "2464c4ab", "2464c4abcf10c95701", "2464c4abcf10c957" + strings.Repeat("00", 33)} {
		if _, v := j.check(cookieOpt(c), testClientAddr, time.Now()); v != cookieMalformed {
			t.Errorf("cookie of %d bytes: verdict %s, want malformed", len(c)/2, v)
		}
	}
	// 8..32-byte server cookies that are not ours are not malformed.
	for _, c := range []string{"2464c4abcf10c957" + "0011223344556677", "2464c4abcf10c957" + "00112233445566770011223344556677" + "0011223344556677"} {
		if _, v := j.check(cookieOpt(c), testClientAddr, time.Now()); v != cookieClientOnly {
			t.Errorf("cookie of %d bytes: verdict %s, want client-only", len(c)/2, v)
		}
	}
}

func cookieQuery(id uint16, cookie string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
	m.Id = id
	m.SetEdns0(1232, false)
	if cookie != "" {
		m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie}}
	}
	return m
}

func replyCookie(r *dns.Msg) string {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if c, ok := o.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

// TestCookiesOverTheWire: a client cookie gets a server cookie back (UDP
// and TCP), a malformed cookie FORMERR with an OPT, and the answer itself
// is the same as without a cookie.
func TestCookiesOverTheWire(t *testing.T) {
	env := newTestEnv(t, Options{})
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, env.addr, cookieQuery(1, "0102030405060708"))
		c := replyCookie(r)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 || len(c) != 2*(clientCookieLen+serverCookieLen) || c[:16] != "0102030405060708" {
			t.Fatalf("%s: rcode %s, %d answers, cookie %q", network, dns.RcodeToString[r.Rcode], len(r.Answer), c)
		}
		// The cookie we got back is valid: it is echoed.
		r2 := exchange(t, network, env.addr, cookieQuery(2, c))
		if replyCookie(r2) != c {
			t.Errorf("%s: a valid cookie was not echoed: %q", network, replyCookie(r2))
		}
		bad := exchange(t, network, env.addr, cookieQuery(3, "01020304"))
		if bad.Rcode != dns.RcodeFormatError || bad.IsEdns0() == nil || len(bad.Answer) != 0 {
			t.Errorf("%s: malformed cookie: %s, want FORMERR with OPT", network, dns.RcodeToString[bad.Rcode])
		}
	}
}

// TestCookiesAndRRL: over the rate limit, a client with a valid server
// cookie is answered in full; one without gets BADCOOKIE with a fresh
// cookie where the limiter slips; one without cookies keeps the plain
// truncated slip.
func TestCookiesAndRRL(t *testing.T) {
	env := newTestEnv(t, Options{RRLRate: 1, RRLSlip: 1})
	first := exchange(t, "udp", env.addr, cookieQuery(1, "0102030405060708"))
	valid := replyCookie(first)
	if valid == "" {
		t.Fatal("no server cookie")
	}
	c := dial(t, "udp", env.addr)
	send := func(id uint16, cookie string, plain bool) *dns.Msg {
		q := cookieQuery(id, cookie)
		if plain {
			q.Extra = nil
		}
		raw, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return exchangeRaw(t, c, raw, id)
	}
	for i := range 10 {
		if r := send(uint16(100+i), valid, false); r.Truncated || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
			t.Fatalf("valid cookie, query %d: limited (TC %t, %s)", i, r.Truncated, dns.RcodeToString[r.Rcode])
		}
	}
	var badcookie, slipped int
	for i := range 10 {
		r := send(uint16(200+i), "0a0b0c0d0e0f0001", false)
		if r.Rcode == dns.RcodeBadCookie {
			badcookie++
			if len(replyCookie(r)) != 48 || len(r.Answer) != 0 {
				t.Errorf("BADCOOKIE without a fresh cookie or with answers: %v", r)
			}
		}
		if p := send(uint16(300+i), "", true); p.Truncated {
			slipped++
		}
	}
	if badcookie == 0 || slipped == 0 {
		t.Errorf("over the limit: %d BADCOOKIE, %d slips; want both", badcookie, slipped)
	}
}

// TestFastPathCookies: a TXT query with a DNS cookie stays on the fast path
// (no allocation), which answers the bytes the full path packs: a fresh
// server cookie for a client cookie, the same one echoed while fresh. A
// malformed cookie or a rate limiter sends it to the full path.
func TestFastPathCookies(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	env := newTestEnv(t, Options{Now: func() time.Time { return now }})
	src := netip.MustParseAddr("198.51.100.7")
	fast, full := make([]byte, maxUDPMessage), make([]byte, maxUDPMessage)
	answer := func(cookie string, extra ...dns.EDNS0) (fastReply []byte, ok bool, fullReply []byte) {
		q := cookieQuery(7, cookie)
		q.IsEdns0().Option = append(extra, q.IsEdns0().Option...)
		pkt := pack(t, q)
		fastReply, ok = env.srv.fastAnswerFrom(pkt, fast, src)
		fullReply, _ = env.srv.slowAnswer(pkt, full, src)
		return fastReply, ok, fullReply
	}
	got, ok, want := answer("0102030405060708")
	if !ok || string(got) != string(want) {
		t.Fatalf("client cookie: fast %t\nfast %x\nfull %x", ok, got, want)
	}
	var r dns.Msg
	if err := r.Unpack(got); err != nil {
		t.Fatal(err)
	}
	issued := replyCookie(&r)
	if len(issued) != 48 || len(r.Answer) != 2 {
		t.Fatalf("reply %v", &r)
	}
	got, ok, want = answer(issued, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("x")})
	if !ok || string(got) != string(want) {
		t.Fatalf("valid cookie: fast %t\nfast %x\nfull %x", ok, got, want)
	}
	if err := r.Unpack(got); err != nil || replyCookie(&r) != issued {
		t.Errorf("valid cookie not echoed: %v", &r)
	}
	if _, ok, want := answer("010203"); ok {
		t.Errorf("malformed cookie answered by the fast path")
	} else if err := r.Unpack(want); err != nil || r.Rcode != dns.RcodeFormatError {
		t.Errorf("malformed cookie: full path %v, want FORMERR", &r)
	}
	pkt := pack(t, cookieQuery(8, "0102030405060708"))
	if _, ok := env.srv.fastAnswer(pkt, fast); ok {
		t.Errorf("a cookie from an unknown source answered by the fast path")
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, ok := env.srv.fastAnswerFrom(pkt, fast, src); !ok {
			t.Fatal("declined")
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per cookie query on the fast path, want 0", allocs)
	}
	limited := newTestEnv(t, Options{RRLRate: 100})
	if _, ok := limited.srv.fastAnswerFrom(pkt, fast, src); ok {
		t.Errorf("with RRL on, a cookie query was answered by the fast path")
	}
}
