package dnsserver

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// updateSeeds are signed UPDATE messages of every shape the tests know:
// adds, deletes, prerequisites, other names and types, bad zones.
func updateSeeds(f *testing.F) {
	ownB := updB + "." + testOrigin
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	builds := []func(m *dns.Msg){
		func(m *dns.Msg) { m.Insert([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)}) },
		func(m *dns.Msg) { m.Remove([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)}) },
		func(m *dns.Msg) {
			m.RemoveRRset([]dns.RR{txtRR(ownA, "", dns.ClassINET)})
			m.Insert([]dns.RR{txtRR(ownA, vTwo, dns.ClassINET)})
		},
		func(m *dns.Msg) { m.RemoveName([]dns.RR{txtRR(ownA, "", dns.ClassINET)}) },
		func(m *dns.Msg) { m.Insert([]dns.RR{rr(ownA + " 60 IN A 192.0.2.1")}) },
		func(m *dns.Msg) { m.Insert([]dns.RR{txtRR(ownB, vOne, dns.ClassINET)}) },
		func(m *dns.Msg) { m.Insert([]dns.RR{txtRR("x.example.com.", vOne, dns.ClassINET)}) },
		func(m *dns.Msg) {
			m.Used([]dns.RR{txtRR(ownA, vOne, dns.ClassINET)})
			m.NameUsed([]dns.RR{txtRR("ns1."+testOrigin, "", dns.ClassINET)})
			m.NameNotUsed([]dns.RR{txtRR("free."+testOrigin, "", dns.ClassINET)})
			m.RRsetUsed([]dns.RR{rr("ns1." + testOrigin + " 0 IN A 127.0.0.2")})
			m.RRsetNotUsed([]dns.RR{txtRR(ownA, "", dns.ClassINET)})
			m.Insert([]dns.RR{txtRR(ownA, strings.Repeat("z", 43), dns.ClassINET)})
		},
		func(m *dns.Msg) { m.Question[0].Name = "example.com." },
	}
	for i, build := range builds {
		m := newUpdate()
		m.Id = uint16(i)
		build(m)
		m.SetTsig(keyA.Name, keyA.Algorithm, 300, time.Now().Unix())
		b, _, err := dns.TsigGenerate(m, secretB64(keyA), "", false)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzUpdateDatagram feeds arbitrary datagrams to the UDP UPDATE path
// (unpack, TSIG, RFC 2136, store): it must not panic, and any reply must
// parse and answer the query's ID. Seeds carry valid signatures, so the
// mutator starts from messages that pass TSIG.
func FuzzUpdateDatagram(f *testing.F) {
	updateSeeds(f)
	e := newUpdateEnv(f, UpdateOptions{FailuresPerMinute: 1 << 20})
	src := netip.MustParseAddr("192.0.2.7")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if !isUpdate(pkt) {
			return
		}
		checkDatagramReply(t, pkt, e.srv.updateDatagram(pkt, src))
	})
}

// FuzzApplyUpdate is the RFC 2136 part alone, as if keyA had signed
// whatever miekg/dns unpacks: the fuzzer reaches prerequisites and update
// records the MAC would otherwise keep out. Whatever comes in, the rcode is
// one RFC 2136 allows, and keyA never writes outside its own name.
func FuzzApplyUpdate(f *testing.F) {
	updateSeeds(f)
	e := newUpdateEnv(f, UpdateOptions{})
	key := e.srv.upd.opts.Keys.byName(keyA.Name)
	allowed := map[int]bool{
		dns.RcodeSuccess: true, dns.RcodeFormatError: true, dns.RcodeNameError: true, dns.RcodeRefused: true,
		dns.RcodeYXDomain: true, dns.RcodeYXRrset: true, dns.RcodeNXRrset: true, dns.RcodeNotAuth: true, dns.RcodeNotZone: true,
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var r dns.Msg
		if err := r.Unpack(pkt); err != nil {
			return
		}
		rcode, _ := e.srv.applyUpdate(context.Background(), &r, key)
		if !allowed[rcode] {
			t.Fatalf("rcode %s for\n%v", dns.RcodeToString[rcode], &r)
		}
		if vs := e.values(t, updB); len(vs) != 0 {
			t.Fatalf("keyA wrote to B: %q", vs)
		}
	})
}
