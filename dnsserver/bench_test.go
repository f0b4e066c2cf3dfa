package dnsserver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// Benchmarks of the UDP answer path without the socket: bytes in, bytes
// out, allocations reported. Socket-level throughput is bench/dns's job.
func benchmarkPacket(b *testing.B, name string, qtype uint16, edns bool) {
	benchmarkPacketWith(b, Options{}, name, qtype, edns)
}

func benchmarkPacketWith(b *testing.B, opts Options, name string, qtype uint16, edns bool) {
	env := newTestEnv(b, opts)
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, true)
	}
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

// Fast path: a subdomain's TXT values, the query the server exists for.
func BenchmarkAnswerTXT(b *testing.B) {
	benchmarkPacket(b, subValues+"."+testOrigin, dns.TypeTXT, false)
}

func BenchmarkAnswerTXTEDNS(b *testing.B) {
	benchmarkPacket(b, subValues+"."+testOrigin, dns.TypeTXT, true)
}

// Full message path: NODATA, NXDOMAIN, apex SOA, out of zone.
func BenchmarkAnswerNoData(b *testing.B) {
	benchmarkPacket(b, subEmpty+"."+testOrigin, dns.TypeTXT, true)
}

func BenchmarkAnswerNXDomain(b *testing.B) {
	benchmarkPacket(b, "nope."+testOrigin, dns.TypeTXT, true)
}

func BenchmarkAnswerApexSOA(b *testing.B) {
	benchmarkPacket(b, testOrigin, dns.TypeSOA, false)
}

func BenchmarkAnswerRefused(b *testing.B) {
	benchmarkPacket(b, "example.com.", dns.TypeA, false)
}
