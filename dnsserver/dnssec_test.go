package dnsserver

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

var testClientAddr = netip.MustParseAddr("192.0.2.1")

func testKey(t testing.TB, id int64, state string) store.DNSSECKey {
	t.Helper()
	der, err := GenerateDNSSECKey()
	if err != nil {
		t.Fatal(err)
	}
	return store.DNSSECKey{ID: id, Algorithm: Algorithm, PrivateKey: der, State: state}
}

// signedServer is a server (not started) with DNSSEC on over env's view,
// whose zone also has a name two labels below an empty non-terminal.
func signedServer(t *testing.T, env *testEnv, keys ...store.DNSSECKey) *Server {
	t.Helper()
	zc := testZoneConfig(t)
	deep, err := dns.NewRR(`a.b.c.auth.example.org. 3600 IN TXT "deep"`)
	if err != nil {
		t.Fatal(err)
	}
	zc.Records = append(zc.Records, deep)
	srv, err := New(Options{Logger: discardLogger(), DNSSECKeys: keys}, zc, env.view)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func doQuery(name string, qtype uint16, co bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, true)
	m.IsEdns0().SetCo(co)
	return m
}

// ask sends q through the full answer path and round-trips the reply
// through the wire, as a client would see it.
func ask(t *testing.T, srv *Server, q *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	m, _ := srv.answer(q, tcp, testClientAddr)
	raw, err := m.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	var r dns.Msg
	if err := r.Unpack(raw); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return &r
}

// verifySection checks that every RRset of rrs other than RRSIG and OPT is
// followed by valid RRSIGs made by keys (by key tag), and returns the tags
// that signed, per covered type.
func verifySection(t *testing.T, what string, rrs []dns.RR, keys []*dns.DNSKEY, now time.Time) map[uint16][]uint16 {
	t.Helper()
	signedBy := map[uint16][]uint16{}
	byTag := map[uint16]*dns.DNSKEY{}
	for _, k := range keys {
		byTag[k.KeyTag()] = k
	}
	for i := 0; i < len(rrs); {
		h := rrs[i].Header()
		if h.Rrtype == dns.TypeOPT {
			i++
			continue
		}
		j := i + 1
		for j < len(rrs) && rrs[j].Header().Rrtype == h.Rrtype && strings.EqualFold(rrs[j].Header().Name, h.Name) {
			j++
		}
		set := rrs[i:j]
		k := j
		for k < len(rrs) && rrs[k].Header().Rrtype == dns.TypeRRSIG {
			sig := rrs[k].(*dns.RRSIG)
			key := byTag[sig.KeyTag]
			if key == nil {
				t.Errorf("%s: RRSIG by unknown key %d", what, sig.KeyTag)
			} else if err := sig.Verify(key, set); err != nil {
				t.Errorf("%s: RRSIG over %s %s does not verify: %v", what, h.Name, dns.TypeToString[h.Rrtype], err)
			} else if !sig.ValidityPeriod(now) || sig.Inception > uint32(now.Add(-30*time.Minute).Unix()) {
				t.Errorf("%s: RRSIG period %d-%d, want inception in the past around %v", what, sig.Inception, sig.Expiration, now)
			}
			if sig.Hdr.Ttl != h.Ttl || sig.OrigTtl != h.Ttl {
				t.Errorf("%s: RRSIG TTL %d orig %d, want %d", what, sig.Hdr.Ttl, sig.OrigTtl, h.Ttl)
			}
			signedBy[h.Rrtype] = append(signedBy[h.Rrtype], sig.KeyTag)
			k++
		}
		if k == j {
			t.Errorf("%s: %s %s is not signed", what, h.Name, dns.TypeToString[h.Rrtype])
		}
		i = k
	}
	return signedBy
}

func dnskeys(t *testing.T, srv *Server) []*dns.DNSKEY {
	t.Helper()
	r := ask(t, srv, doQuery(testOrigin, dns.TypeDNSKEY, false), true)
	var out []*dns.DNSKEY
	for _, rr := range r.Answer {
		if k, ok := rr.(*dns.DNSKEY); ok {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no DNSKEY at the apex:\n%v", r)
	}
	return out
}

func nsecOf(r *dns.Msg) *dns.NSEC {
	for _, rr := range r.Ns {
		if n, ok := rr.(*dns.NSEC); ok {
			return n
		}
	}
	return nil
}

func typeNames(types []uint16) string {
	var s []string
	for _, t := range types {
		s = append(s, dns.Type(t).String())
	}
	return strings.Join(s, " ")
}

// TestSignedAnswers: every RRset of a DO=1 answer is signed and verifies,
// and negative answers carry the compact-denial NSEC with the right types.
func TestSignedAnswers(t *testing.T) {
	env := newTestEnv(t, Options{})
	srv := signedServer(t, env, testKey(t, 1, store.KeyActive))
	keys := dnskeys(t, srv)
	sub := subValues + "." + testOrigin
	cases := []struct {
		name        string
		qname       string
		qtype       uint16
		co          bool
		rcode       int
		answerTypes string // types in the answer, RRSIGs included
		nsec        string // the NSEC's bitmap; "" for none
	}{
		{"apex soa", testOrigin, dns.TypeSOA, false, dns.RcodeSuccess, "SOA RRSIG", ""},
		{"apex dnskey", testOrigin, dns.TypeDNSKEY, false, dns.RcodeSuccess, "DNSKEY RRSIG", ""},
		{"apex cds", testOrigin, dns.TypeCDS, false, dns.RcodeSuccess, "CDS RRSIG", ""},
		{"apex cdnskey", testOrigin, dns.TypeCDNSKEY, false, dns.RcodeSuccess, "CDNSKEY RRSIG", ""},
		{"apex ns", testOrigin, dns.TypeNS, false, dns.RcodeSuccess, "NS NS RRSIG", ""},
		{"apex txt", testOrigin, dns.TypeTXT, false, dns.RcodeSuccess, "TXT RRSIG", ""},
		{"apex mx nodata", testOrigin, dns.TypeMX, false, dns.RcodeSuccess, "", "A NS SOA TXT AAAA RRSIG NSEC DNSKEY CDS CDNSKEY"},
		{"apex ds nodata", testOrigin, dns.TypeDS, false, dns.RcodeSuccess, "", "A NS SOA TXT AAAA RRSIG NSEC DNSKEY CDS CDNSKEY"},
		{"sub txt", sub, dns.TypeTXT, false, dns.RcodeSuccess, "TXT TXT RRSIG", ""},
		{"sub txt 0x20", strings.ToUpper(sub), dns.TypeTXT, false, dns.RcodeSuccess, "TXT TXT RRSIG", ""},
		{"sub a nodata", sub, dns.TypeA, false, dns.RcodeSuccess, "", "TXT RRSIG NSEC"},
		{"sub without values", subEmpty + "." + testOrigin, dns.TypeTXT, false, dns.RcodeSuccess, "", "RRSIG NSEC"},
		{"nxdomain is compact", "nope." + testOrigin, dns.TypeTXT, false, dns.RcodeSuccess, "", "RRSIG NSEC NXNAME"},
		{"nxdomain with CO", "nope." + testOrigin, dns.TypeTXT, true, dns.RcodeNameError, "", "RRSIG NSEC NXNAME"},
		{"below a subdomain", "x." + sub, dns.TypeTXT, false, dns.RcodeSuccess, "", "RRSIG NSEC NXNAME"},
		{"empty non-terminal", "b.c." + testOrigin, dns.TypeTXT, false, dns.RcodeSuccess, "", "RRSIG NSEC"},
		{"empty non-terminal, upper", "c." + testOrigin, dns.TypeA, false, dns.RcodeSuccess, "", "RRSIG NSEC"},
		{"below the deep name", "z.a.b.c." + testOrigin, dns.TypeA, false, dns.RcodeSuccess, "", "RRSIG NSEC NXNAME"},
		{"deep txt", "a.b.c." + testOrigin, dns.TypeTXT, false, dns.RcodeSuccess, "TXT RRSIG", ""},
		{"glue name txt nodata", "ns1." + testOrigin, dns.TypeTXT, false, dns.RcodeSuccess, "", "A AAAA RRSIG NSEC"},
		{"cname chased", "www." + testOrigin, dns.TypeA, false, dns.RcodeSuccess, "CNAME RRSIG A RRSIG", ""},
	}
	now := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ask(t, srv, doQuery(c.qname, c.qtype, c.co), true)
			if r.Rcode != c.rcode || !r.Authoritative || r.AuthenticatedData {
				t.Fatalf("rcode %s aa %t ad %t, want %s aa, no ad:\n%v", dns.RcodeToString[r.Rcode], r.Authoritative, r.AuthenticatedData, dns.RcodeToString[c.rcode], r)
			}
			var got []string
			for _, rr := range r.Answer {
				got = append(got, dns.TypeToString[rr.Header().Rrtype])
			}
			if strings.Join(got, " ") != c.answerTypes {
				t.Errorf("answer types %q, want %q:\n%v", strings.Join(got, " "), c.answerTypes, r)
			}
			verifySection(t, "answer", r.Answer, keys, now)
			verifySection(t, "authority", r.Ns, keys, now)
			verifySection(t, "additional", r.Extra, keys, now)
			n := nsecOf(r)
			switch {
			case c.nsec == "" && n != nil:
				t.Errorf("unexpected NSEC %v", n)
			case c.nsec != "" && n == nil:
				t.Errorf("no NSEC in a negative answer:\n%v", r)
			case n != nil:
				if got := typeNames(n.TypeBitMap); got != c.nsec {
					t.Errorf("NSEC bitmap %q, want %q", got, c.nsec)
				}
				if !strings.EqualFold(n.Hdr.Name, c.qname) || !strings.EqualFold(n.NextDomain, `\000.`+c.qname) || n.Hdr.Ttl != 60 {
					t.Errorf("NSEC %v, want %s -> \\000.%s with TTL 60", n, c.qname, c.qname)
				}
				if slices.Contains(n.TypeBitMap, c.qtype) {
					t.Errorf("NSEC bitmap has the queried type: %v", n)
				}
				if soa, ok := r.Ns[0].(*dns.SOA); !ok || soa.Hdr.Ttl != 60 {
					t.Errorf("authority starts with %v, want the SOA with TTL 60", r.Ns[0])
				}
			}
			if opt := r.IsEdns0(); opt == nil || !opt.Do() || opt.Co() != c.co {
				t.Errorf("reply OPT %v, want DO echoed and CO %t", opt, c.co)
			}
		})
	}
}

// TestDO0AnswersUnchanged runs the golden battery against a signing server:
// every query without DO gets the golden file's answer, byte for byte as
// rendered, so turning DNSSEC on changes nothing for those clients.
func TestDO0AnswersUnchanged(t *testing.T) {
	env := newTestEnv(t, Options{DNSSECKeys: []store.DNSSECKey{testKey(t, 1, store.KeyActive)}})
	runGolden(t, env, func(c goldenCase) bool { return c.edns == nil || !c.edns.do })
}

// TestSignatureCache: an RRset is signed once per content; a new value is
// a new RRset and gets a new signature. ECDSA signatures are randomised, so
// equal signatures mean a cache hit.
func TestSignatureCache(t *testing.T) {
	env := newTestEnv(t, Options{})
	srv := signedServer(t, env, testKey(t, 1, store.KeyActive))
	sigOf := func(r *dns.Msg) string {
		for _, rr := range r.Answer {
			if s, ok := rr.(*dns.RRSIG); ok {
				return s.Signature
			}
		}
		t.Fatalf("no RRSIG:\n%v", r)
		return ""
	}
	sub := subValues + "." + testOrigin
	first := sigOf(ask(t, srv, doQuery(sub, dns.TypeTXT, false), true))
	if again := sigOf(ask(t, srv, doQuery(strings.ToUpper(sub), dns.TypeTXT, false), false)); again != first {
		t.Errorf("the same RRset was signed again")
	}
	if err := env.store.AddValue(context.Background(), subValues, value(subValues, 7)); err != nil {
		t.Fatal(err)
	}
	r := ask(t, srv, doQuery(sub, dns.TypeTXT, false), true)
	if sigOf(r) == first {
		t.Errorf("a changed RRset kept its old signature")
	}
	verifySection(t, "answer", r.Answer, dnskeys(t, srv), time.Now())
}

// TestSignatureRefresh: a cached signature older than signatureRefresh is
// replaced, and its validity moves on.
func TestSignatureRefresh(t *testing.T) {
	env := newTestEnv(t, Options{})
	now := time.Now()
	clock := func() time.Time { return now }
	srv, err := New(Options{Logger: discardLogger(), Now: func() time.Time { return clock() }, DNSSECKeys: []store.DNSSECKey{testKey(t, 1, store.KeyActive)}}, testZoneConfig(t), env.view)
	if err != nil {
		t.Fatal(err)
	}
	sig := func() *dns.RRSIG {
		r := ask(t, srv, doQuery(testOrigin, dns.TypeSOA, false), true)
		return r.Answer[1].(*dns.RRSIG)
	}
	a := sig()
	now = now.Add(signatureRefresh / 2)
	if b := sig(); b.Signature != a.Signature {
		t.Errorf("re-signed before the refresh age")
	}
	now = now.Add(signatureRefresh)
	b := sig()
	if b.Signature == a.Signature || b.Expiration <= a.Expiration {
		t.Errorf("not re-signed after the refresh age: expiration %d then %d", a.Expiration, b.Expiration)
	}
	if !b.ValidityPeriod(now) {
		t.Errorf("refreshed signature not valid now")
	}
}

// TestRolloverKeySets walks the three rollover states: the DNSKEY RRset
// holds both keys and is signed by both; everything else by the active key
// only; CDS/CDNSKEY name every key but a retired one.
func TestRolloverKeySets(t *testing.T) {
	env := newTestEnv(t, Options{})
	old, next := testKey(t, 1, store.KeyActive), testKey(t, 2, store.KeyPublished)
	srv := signedServer(t, env, old)
	oldTag := mustDNSKEY(t, old).KeyTag()
	newTag := mustDNSKEY(t, next).KeyTag()
	retired, active := old, next
	retired.State, active.State = store.KeyRetired, store.KeyActive
	steps := []struct {
		name            string
		keys            []store.DNSSECKey
		dnskeySigners   []uint16
		soaSigner       uint16
		cds             int
		cdsTag          uint16
		wantDNSKEYCount int
	}{
		{"start", []store.DNSSECKey{old}, []uint16{oldTag}, oldTag, 1, oldTag, 1},
		{"pre-published", []store.DNSSECKey{old, next}, []uint16{oldTag, newTag}, oldTag, 2, oldTag, 2},
		{"switched", []store.DNSSECKey{retired, active}, []uint16{oldTag, newTag}, newTag, 1, newTag, 2},
		{"withdrawn", []store.DNSSECKey{active}, []uint16{newTag}, newTag, 1, newTag, 1},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := srv.SetDNSSECKeys(st.keys); err != nil {
				t.Fatal(err)
			}
			keys := dnskeys(t, srv)
			if len(keys) != st.wantDNSKEYCount {
				t.Fatalf("%d DNSKEYs, want %d", len(keys), st.wantDNSKEYCount)
			}
			r := ask(t, srv, doQuery(testOrigin, dns.TypeDNSKEY, false), true)
			by := verifySection(t, "dnskey", r.Answer, keys, time.Now())
			if got := by[dns.TypeDNSKEY]; !slices.Equal(got, st.dnskeySigners) {
				t.Errorf("DNSKEY signed by %v, want %v", got, st.dnskeySigners)
			}
			r = ask(t, srv, doQuery(testOrigin, dns.TypeSOA, false), true)
			by = verifySection(t, "soa", r.Answer, keys, time.Now())
			if got := by[dns.TypeSOA]; !slices.Equal(got, []uint16{st.soaSigner}) {
				t.Errorf("SOA signed by %v, want %d", got, st.soaSigner)
			}
			r = ask(t, srv, doQuery(testOrigin, dns.TypeCDS, false), true)
			var cds []*dns.CDS
			for _, rr := range r.Answer {
				if c, ok := rr.(*dns.CDS); ok {
					cds = append(cds, c)
				}
			}
			if len(cds) != st.cds || cds[0].KeyTag != st.cdsTag || cds[0].DigestType != dns.SHA256 {
				t.Errorf("CDS %v, want %d starting with key %d (SHA-256)", cds, st.cds, st.cdsTag)
			}
		})
	}
	// A key set that does not fit is refused and changes nothing.
	for _, bad := range [][]store.DNSSECKey{nil, {next}, {old, active}} {
		if err := srv.SetDNSSECKeys(bad); err == nil {
			t.Errorf("SetDNSSECKeys(%d keys) accepted", len(bad))
		}
	}
	if keys := dnskeys(t, srv); len(keys) != 1 || keys[0].KeyTag() != newTag {
		t.Errorf("a refused key set changed the keys: %v", keys)
	}
}

func mustDNSKEY(t *testing.T, k store.DNSSECKey) *dns.DNSKEY {
	t.Helper()
	dk, err := DNSKEY(testOrigin, 3600, k)
	if err != nil {
		t.Fatal(err)
	}
	return dk
}

// TestSignedTruncation: a signed answer too big for the client's buffer is
// truncated with nothing in it, and TCP carries it whole and valid.
func TestSignedTruncation(t *testing.T) {
	key := testKey(t, 1, store.KeyActive)
	env := newTestEnv(t, Options{DNSSECKeys: []store.DNSSECKey{key}})
	big := doQuery(subBig+"."+testOrigin, dns.TypeTXT, false)
	big.Id = 77
	udp := exchange(t, "udp", env.addr, big)
	if !udp.Truncated || len(udp.Answer)+len(udp.Ns) != 0 || udp.IsEdns0() == nil {
		t.Errorf("udp: TC %t, %d answers: want TC=1 and no records but OPT", udp.Truncated, len(udp.Answer))
	}
	tcp := exchange(t, "tcp", env.addr, big)
	if tcp.Truncated || len(tcp.Answer) != 31 {
		t.Fatalf("tcp: TC %t, %d answers, want 30 TXT and an RRSIG", tcp.Truncated, len(tcp.Answer))
	}
	verifySection(t, "tcp answer", tcp.Answer, []*dns.DNSKEY{mustDNSKEY(t, key)}, time.Now())
	// A small signed answer fits in 512 bytes without EDNS? It has no DO
	// then: a DO=1 answer with a 512-byte buffer is truncated if need be.
	small := doQuery(subValues+"."+testOrigin, dns.TypeTXT, false)
	small.IsEdns0().SetUDPSize(512)
	small.Id = 78
	r := exchange(t, "udp", env.addr, small)
	if r.Truncated || len(r.Answer) != 3 {
		t.Errorf("small signed answer: TC %t, %d answers, want 2 TXT and an RRSIG", r.Truncated, len(r.Answer))
	}
}

// TestFastPathDeclinesSigned: with DNSSEC on, a DO=1 query goes to the full
// path (which signs) and a DO=0 query stays on the fast path.
func TestFastPathDeclinesSigned(t *testing.T) {
	env := newTestEnv(t, Options{DNSSECKeys: []store.DNSSECKey{testKey(t, 1, store.KeyActive)}})
	out := make([]byte, maxUDPMessage)
	for _, do := range []bool{false, true} {
		m := new(dns.Msg)
		m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
		m.SetEdns0(1232, do)
		_, ok := env.srv.fastAnswer(pack(t, m), out)
		if ok == do {
			t.Errorf("DO=%t: fast path answered %t", do, ok)
		}
	}
}
