package dnsserver

import (
	"net/netip"
	"testing"

	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

// benchmarkSigned is benchmarkPacket with DNSSEC on and DO=1: the signed
// answer path (signatures come from the cache after the first query).
func benchmarkSigned(b *testing.B, name string, qtype uint16) {
	env := newTestEnv(b, Options{DNSSECKeys: []store.DNSSECKey{testKey(b, 1, store.KeyActive)}})
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, true)
	pkt, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, maxUDPMessage)
	src := netip.MustParseAddr("127.0.0.1")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if env.srv.handlePacket(pkt, out, src) == nil {
			b.Fatal("no reply")
		}
	}
}

func BenchmarkSignedTXT(b *testing.B) {
	benchmarkSigned(b, subValues+"."+testOrigin, dns.TypeTXT)
}

func BenchmarkSignedNoData(b *testing.B) {
	benchmarkSigned(b, subEmpty+"."+testOrigin, dns.TypeTXT)
}

func BenchmarkSignedApexSOA(b *testing.B) {
	benchmarkSigned(b, testOrigin, dns.TypeSOA)
}
