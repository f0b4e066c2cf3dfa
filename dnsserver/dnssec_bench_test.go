package dnsserver

import (
	"testing"

	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

// benchmarkSigned is benchmarkPacket with DNSSEC on and DO=1: the signed
// answer path (signatures come from the cache after the first query).
func benchmarkSigned(b *testing.B, name string, qtype uint16) {
	benchmarkPacketWith(b, Options{DNSSECKeys: []store.DNSSECKey{testKey(b, 1, store.KeyActive)}}, name, qtype, true)
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
