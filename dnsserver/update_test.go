package dnsserver

import (
	"bufio"
	"context"
	"encoding/base64"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/delegated/delegated/store"
	"github.com/delegated/delegated/store/storetest"
)

const (
	updA = "0b8f0c4e-1f6e-4a51-9a57-2f7d1b4c6a01" // has keyA
	updB = "5c2d7e9a-3b4f-4c8d-8e1a-6f0b2d3c4e02" // has keyB
)

var (
	keyA = store.TSIGKey{Subdomain: updA, Name: updA + "." + testOrigin, Algorithm: store.HMACSHA256, Secret: []byte("0123456789abcdef0123456789abcdef")}
	keyB = store.TSIGKey{Subdomain: updB, Name: "b-key.example.", Algorithm: store.HMACSHA512, Secret: []byte("fedcba9876543210fedcba9876543210"), FreeTXT: true}
)

func secretB64(k store.TSIGKey) string { return base64.StdEncoding.EncodeToString(k.Secret) }

type updateEnv struct {
	st   *store.Store
	srv  *Server
	addr string
}

// newUpdateEnv is a server with updates on, over a real SQLite store with
// a key-encryption key and two accounts with keys; the view and the keys
// follow the store as in production.
func newUpdateEnv(t testing.TB, uo UpdateOptions) *updateEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	kek, err := store.LoadKEK(filepath.Join(dir, "tsig.kek"), true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, "sqlite3", filepath.Join(dir, "d.db"), store.Options{ValuesPerAccount: 3, KEK: kek, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i, sub := range []string{updA, updB, subEmpty} {
		if err := st.CreateAccount(ctx, store.Account{Username: "u" + string(rune('0'+i)), KeyHash: "x", Subdomain: sub}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetTSIGKey(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	view, stop, err := Follow(ctx, st, time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	keys, stopKeys, err := FollowTSIGKeys(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopKeys)
	// keyB arrives by subscription, after the load.
	if err := st.SetTSIGKey(ctx, keyB); err != nil {
		t.Fatal(err)
	}
	uo.Store, uo.Keys = st, keys
	srv, err := New(Options{Listen: []string{"127.0.0.1:0"}, Logger: discardLogger(), Updates: &uo}, testZoneConfig(t), view)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &updateEnv{st: st, srv: srv, addr: srv.Addrs()[0]}
}

func (e *updateEnv) values(t testing.TB, sub string) []string {
	t.Helper()
	vs, err := storetest.Values(context.Background(), e.st, sub)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// served is what DNS answers for sub's TXT.
func (e *updateEnv) served(t testing.TB, sub string) []string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(sub+"."+testOrigin, dns.TypeTXT)
	r := exchange(t, "udp", e.addr, q)
	var out []string
	for _, rr := range r.Answer {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out
}

func txtRR(owner, v string, class uint16) dns.RR {
	return &dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: class, Ttl: 60}, Txt: []string{v}}
}

// sendUpdate signs m with k (secret overrides k's, when set; at time
// signed) and sends it; a client-side TSIG error on the reply is returned
// beside it (unsigned error replies cannot verify).
func sendUpdate(t testing.TB, network, addr string, m *dns.Msg, k *store.TSIGKey, secret string, signed time.Time) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: ioTimeout}
	if k != nil {
		if secret == "" {
			secret = secretB64(*k)
		}
		m.SetTsig(k.Name, k.Algorithm, 300, signed.Unix())
		c.TsigSecret = map[string]string{k.Name: secret}
	}
	r, _, err := c.Exchange(m, addr)
	if r == nil {
		t.Fatalf("no reply: %v", err)
	}
	return r, err
}

func newUpdate() *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate(testOrigin)
	return m
}

var (
	ownA = updA + "." + testOrigin
	vOne = strings.Repeat("A", 43)
	vTwo = strings.Repeat("b", 42) + "-"
)

// TestUpdateApplies: add, delete-RR and delete-RRset, over UDP and TCP,
// each served before the signed NOERROR comes back, the reply verifying
// with the same key.
func TestUpdateApplies(t *testing.T) {
	e := newUpdateEnv(t, UpdateOptions{})
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			step := func(name string, build func(m *dns.Msg), want []string) {
				t.Helper()
				m := newUpdate()
				build(m)
				r, err := sendUpdate(t, network, e.addr, m, &keyA, "", time.Now())
				if err != nil {
					t.Fatalf("%s: reply does not verify: %v", name, err)
				}
				if r.Rcode != dns.RcodeSuccess || r.IsTsig() == nil {
					t.Fatalf("%s: %s, TSIG %v", name, dns.RcodeToString[r.Rcode], r.IsTsig())
				}
				if got := e.served(t, updA); !slices.Equal(got, want) {
					t.Fatalf("%s: served %q, want %q", name, got, want)
				}
				if got := e.values(t, updA); !slices.Equal(got, want) {
					t.Fatalf("%s: stored %q, want %q", name, got, want)
				}
			}
			step("add", func(m *dns.Msg) { m.Insert([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)}) }, []string{vOne})
			step("add second", func(m *dns.Msg) { m.Insert([]dns.RR{txtRR(ownA, vTwo, dns.ClassINET)}) }, []string{vOne, vTwo})
			step("delete one", func(m *dns.Msg) { m.Remove([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)}) }, []string{vTwo})
			// lego's Present: delete the RRset, then add, in one message.
			step("replace", func(m *dns.Msg) {
				m.RemoveRRset([]dns.RR{txtRR(ownA, vTwo, dns.ClassINET)})
				m.Insert([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)})
			}, []string{vOne})
			step("prerequisite holds", func(m *dns.Msg) {
				m.Used([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)})
				m.Insert([]dns.RR{txtRR(ownA, vTwo, dns.ClassINET)})
			}, []string{vOne, vTwo})
			// ValuesPerAccount is 3: the newest three stay.
			step("per account limit", func(m *dns.Msg) {
				m.Insert([]dns.RR{txtRR(ownA, strings.Repeat("c", 43), dns.ClassINET), txtRR(ownA, strings.Repeat("d", 43), dns.ClassINET)})
			}, []string{vTwo, strings.Repeat("c", 43), strings.Repeat("d", 43)})
			step("delete all", func(m *dns.Msg) { m.RemoveRRset([]dns.RR{txtRR(ownA, "", dns.ClassINET)}) }, nil)
		})
	}
	// keyB (hmac-sha512, free-form TXT, a name of its own) writes any value
	// to its own name.
	m := newUpdate()
	m.Insert([]dns.RR{txtRR(updB+"."+testOrigin, "v=free form; ok", dns.ClassINET)})
	if r, err := sendUpdate(t, "udp", e.addr, m, &keyB, "", time.Now()); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("free-form with keyB: %v %v", err, r)
	}
	if got := e.served(t, updB); !slices.Equal(got, []string{"v=free form; ok"}) {
		t.Fatalf("served %q", got)
	}
}

// TestUpdateRejects: each bad update gets its rcode (and TSIG error) and
// changes nothing, over UDP and TCP.
func TestUpdateRejects(t *testing.T) {
	e := newUpdateEnv(t, UpdateOptions{FailuresPerMinute: 1000})
	ctx := context.Background()
	if err := e.st.AddValue(ctx, updA, vOne); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AddValue(ctx, updB, vTwo); err != nil {
		t.Fatal(err)
	}
	add := func(owner, v string) func(*dns.Msg) {
		return func(m *dns.Msg) { m.Insert([]dns.RR{txtRR(owner, v, dns.ClassINET)}) }
	}
	cases := []struct {
		name    string
		build   func(*dns.Msg)
		key     *store.TSIGKey
		secret  string
		signed  time.Time
		rcode   int
		tsigErr uint16 // when the reply must carry a TSIG with this error
		signedR bool   // the reply verifies with the key
		macR    bool   // the reply carries a MAC
	}{
		{name: "unsigned", build: add(ownA, vTwo), rcode: dns.RcodeRefused},
		{name: "wrong secret", build: add(ownA, vTwo), key: &keyA, secret: secretB64(keyB), rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadSig},
		{name: "unknown key", build: add(ownA, vTwo), key: &store.TSIGKey{Name: "nobody.example.", Algorithm: store.HMACSHA256, Secret: keyA.Secret}, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "wrong algorithm", build: add(ownA, vTwo), key: &store.TSIGKey{Name: keyA.Name, Algorithm: store.HMACSHA512, Secret: keyA.Secret}, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "expired time", build: add(ownA, vTwo), key: &keyA, signed: time.Now().Add(-time.Hour), rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadTime},
		{name: "future time", build: add(ownA, vTwo), key: &keyA, signed: time.Now().Add(time.Hour), rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadTime},
		{name: "another account's name", build: add(updB+"."+testOrigin, vTwo), key: &keyA, rcode: dns.RcodeRefused, signedR: true},
		{name: "unregistered name", build: add("nobody."+testOrigin, vTwo), key: &keyA, rcode: dns.RcodeRefused, signedR: true},
		{name: "apex", build: add(testOrigin, vTwo), key: &keyA, rcode: dns.RcodeRefused, signedR: true},
		{name: "non-TXT type", build: func(m *dns.Msg) {
			rr, _ := dns.NewRR(ownA + " 60 IN A 192.0.2.1")
			m.Insert([]dns.RR{rr})
		}, key: &keyA, rcode: dns.RcodeRefused, signedR: true},
		{name: "delete all RRsets of the name", build: func(m *dns.Msg) {
			m.RemoveName([]dns.RR{txtRR(ownA, "", dns.ClassINET)})
		}, key: &keyA, rcode: dns.RcodeRefused, signedR: true},
		{name: "not a challenge value", build: add(ownA, "hello"), key: &keyA, rcode: dns.RcodeRefused, signedR: true},
		// Atomic: the good first record is not applied either.
		{name: "good then bad", build: func(m *dns.Msg) {
			m.Insert([]dns.RR{txtRR(ownA, vTwo, dns.ClassINET), txtRR(updB+"."+testOrigin, vTwo, dns.ClassINET)})
		}, key: &keyA, rcode: dns.RcodeRefused, signedR: true},
		{name: "name outside the zone", build: add("x.example.com.", vTwo), key: &keyA, rcode: dns.RcodeNotZone, signedR: true},
		{name: "not our zone", build: func(m *dns.Msg) {
			m.Question[0].Name = "example.com."
			m.Insert([]dns.RR{txtRR("x.example.com.", vTwo, dns.ClassINET)})
		}, key: &keyA, rcode: dns.RcodeNotAuth, macR: true}, // miekg's client cannot verify NOTAUTH replies
		{name: "no zone section", build: func(m *dns.Msg) {
			add(ownA, vTwo)(m)
			m.Question = nil
		}, key: &keyA, rcode: dns.RcodeFormatError, signedR: true},
		{name: "zone type not SOA", build: func(m *dns.Msg) {
			m.Question[0].Qtype = dns.TypeTXT
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeFormatError, signedR: true},
		{name: "malformed prerequisite (TTL)", build: func(m *dns.Msg) {
			m.Answer = append(m.Answer, &dns.ANY{Hdr: dns.RR_Header{Name: ownA, Rrtype: dns.TypeTXT, Class: dns.ClassANY, Ttl: 30}})
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeFormatError, signedR: true},
		{name: "malformed prerequisite (class)", build: func(m *dns.Msg) {
			m.Answer = append(m.Answer, &dns.ANY{Hdr: dns.RR_Header{Name: ownA, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS}})
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeFormatError, signedR: true},
		{name: "prerequisite outside the zone", build: func(m *dns.Msg) {
			m.RRsetUsed([]dns.RR{txtRR("x.example.com.", "", dns.ClassINET)})
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeNotZone, signedR: true},
		{name: "prerequisite: RRset exists (value) fails", build: func(m *dns.Msg) {
			m.Used([]dns.RR{txtRR(ownA, vTwo, dns.ClassINET)})
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeNXRrset, signedR: true},
		{name: "prerequisite: RRset does not exist fails", build: func(m *dns.Msg) {
			m.RRsetNotUsed([]dns.RR{txtRR(ownA, "", dns.ClassINET)})
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeYXRrset, signedR: true},
		{name: "prerequisite: name in use fails", build: func(m *dns.Msg) {
			m.NameUsed([]dns.RR{txtRR(subEmpty+"."+testOrigin, "", dns.ClassINET)})
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeNameError, signedR: true},
		{name: "prerequisite: name not in use fails", build: func(m *dns.Msg) {
			m.NameNotUsed([]dns.RR{txtRR("ns1."+testOrigin, "", dns.ClassINET)})
			add(ownA, vTwo)(m)
		}, key: &keyA, rcode: dns.RcodeYXDomain, signedR: true},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range cases {
			t.Run(network+"/"+c.name, func(t *testing.T) {
				m := newUpdate()
				c.build(m)
				signed := c.signed
				if signed.IsZero() {
					signed = time.Now()
				}
				r, err := sendUpdate(t, network, e.addr, m, c.key, c.secret, signed)
				if r.Rcode != c.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
				}
				if c.signedR && err != nil {
					t.Errorf("signed reply does not verify: %v", err)
				}
				if tr := r.IsTsig(); c.macR && (tr == nil || tr.MACSize == 0 || tr.Error != 0) {
					t.Errorf("reply TSIG %v, want a MAC", tr)
				}
				if c.tsigErr != 0 {
					tr := r.IsTsig()
					if tr == nil || tr.Error != c.tsigErr {
						t.Errorf("reply TSIG %v, want error %s", tr, dns.RcodeToString[int(c.tsigErr)])
					}
					if c.tsigErr == dns.RcodeBadTime && (tr == nil || tr.MACSize == 0 || tr.OtherLen != 6) {
						t.Errorf("BADTIME reply must be signed and carry our time: %v", tr)
					}
				}
				if c.key == nil && r.IsTsig() != nil {
					t.Error("signed reply to an unsigned update")
				}
				if got := e.values(t, updA); !slices.Equal(got, []string{vOne}) {
					t.Errorf("values of A changed to %q", got)
				}
				if got := e.values(t, updB); !slices.Equal(got, []string{vTwo}) {
					t.Errorf("values of B changed to %q", got)
				}
			})
		}
	}
	// Every case was counted by result, and exported under that name.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.srv.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "delegated_dns_updates_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"applied": 0, "badkey": 4, "badsig": 2, "badtime": 4, "badtrunc": 0, "busy": 0, "formerr": 8, "notauth": 2,
		"notzone": 4, "prerequisite_failed": 8, "rate_limited": 0, "refused": 14, "servfail": 0, "unsigned": 2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("delegated_dns_updates_total{result=%q} = %v, want %v", k, got[k], v)
		}
	}
}

// TestUpdateFailureLimit: past FailuresPerMinute bad signatures from one
// source, even a good update is refused unchecked, until tokens refill.
func TestUpdateFailureLimit(t *testing.T) {
	e := newUpdateEnv(t, UpdateOptions{FailuresPerMinute: 3})
	bad := func() int {
		m := newUpdate()
		m.Insert([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)})
		r, _ := sendUpdate(t, "udp", e.addr, m, &keyA, secretB64(keyB), time.Now())
		return r.Rcode
	}
	for i := range 3 {
		if rc := bad(); rc != dns.RcodeNotAuth {
			t.Fatalf("bad signature %d: %s, want NOTAUTH", i, dns.RcodeToString[rc])
		}
	}
	if rc := bad(); rc != dns.RcodeRefused {
		t.Fatalf("4th bad signature: %s, want REFUSED (limited)", dns.RcodeToString[rc])
	}
	m := newUpdate()
	m.Insert([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)})
	if r, _ := sendUpdate(t, "tcp", e.addr, m, &keyA, "", time.Now()); r.Rcode != dns.RcodeRefused {
		t.Fatalf("good update while limited: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if got := e.values(t, updA); len(got) != 0 {
		t.Fatalf("values %q", got)
	}
}

// TestUpdateKeyRemoved: removing a key (or the account) makes its updates
// BADKEY at once, with no database read on the update path.
func TestUpdateKeyRemoved(t *testing.T) {
	e := newUpdateEnv(t, UpdateOptions{FailuresPerMinute: 1000})
	ctx := context.Background()
	send := func(k store.TSIGKey) *dns.Msg {
		m := newUpdate()
		m.Insert([]dns.RR{txtRR(k.Subdomain+"."+testOrigin, vOne, dns.ClassINET)})
		r, _ := sendUpdate(t, "udp", e.addr, m, &k, "", time.Now())
		return r
	}
	if err := e.st.RemoveTSIGKey(ctx, updA); err != nil {
		t.Fatal(err)
	}
	if r := send(keyA); r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadKey {
		t.Fatalf("removed key: %v", r)
	}
	if err := e.st.DeleteAccount(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if r := send(keyB); r.Rcode != dns.RcodeNotAuth || r.IsTsig().Error != dns.RcodeBadKey {
		t.Fatalf("deleted account's key: %v", r)
	}
	// A replaced key: the old secret fails, the new one works.
	newA := keyA
	newA.Secret = []byte("another secret of thirty-two b.")
	if err := e.st.SetTSIGKey(ctx, newA); err != nil {
		t.Fatal(err)
	}
	if r := send(keyA); r.Rcode != dns.RcodeNotAuth || r.IsTsig().Error != dns.RcodeBadSig {
		t.Fatalf("old secret: %v", r)
	}
	if r := send(newA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("new secret: %v", r)
	}
}

// TestUpdatesOff: without Updates, a signed UPDATE is REFUSED as before.
func TestUpdatesOff(t *testing.T) {
	env := newTestEnv(t, Options{})
	m := newUpdate()
	m.Insert([]dns.RR{txtRR(subEmpty+"."+testOrigin, vOne, dns.ClassINET)})
	r, _ := sendUpdate(t, "udp", env.addr, m, &keyA, "", time.Now())
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	vs, _ := storetest.Values(context.Background(), env.store, subEmpty)
	if len(vs) != 0 {
		t.Fatalf("values %q", vs)
	}
}

// TestSecretNeverPrinted: a key's secret redacts itself in fmt and slog.
func TestSecretNeverPrinted(t *testing.T) {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	log := slog.New(slog.NewTextHandler(w, nil))
	log.Info("key", "key", keyA, "secret", keyA.Secret)
	w.Flush()
	if strings.Contains(b.String(), string(keyA.Secret)) || strings.Contains(b.String(), secretB64(keyA)) {
		t.Fatalf("secret in log: %s", b.String())
	}
}
