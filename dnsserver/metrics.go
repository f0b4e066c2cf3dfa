package dnsserver

import (
	"sync/atomic"

	"github.com/miekg/dns"
)

// Query counters for a metrics collector: replies by question type and
// rcode. The label set is bounded (common types one by one, the rest as
// "other") so a scanner cycling through 65536 types cannot grow it, and
// counting is one atomic add in a fixed array: no map, no allocation.

// qtypeNone marks replies sent without a readable question (FORMERR,
// NOTIMP from the header alone); it is reported as "other".
const qtypeNone = 0

var countedTypes = [...]uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeSOA, dns.TypeNS, dns.TypeCAA,
	dns.TypeCNAME, dns.TypeMX, dns.TypePTR, dns.TypeSRV, dns.TypeDS, dns.TypeDNSKEY,
	dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR,
}

const otherSlot = len(countedTypes)

var countedRcodes = [...]int{
	dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
	dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers,
}

const otherRcode = len(countedRcodes)

type queryCounts struct {
	n [len(countedTypes) + 1][len(countedRcodes) + 1]atomic.Uint64
}

func qtypeSlot(t uint16) int {
	for i, ct := range countedTypes {
		if ct == t {
			return i
		}
	}
	return otherSlot
}

func rcodeSlot(rc int) int {
	for i, c := range countedRcodes {
		if c == rc {
			return i
		}
	}
	return otherRcode
}

func (c *queryCounts) add(qtype uint16, rcode int) {
	c.n[qtypeSlot(qtype)][rcodeSlot(rcode)].Add(1)
}

// QueryCounts calls fn with the number of replies sent so far for each
// (question type, rcode) pair seen, e.g. ("TXT", "NOERROR", 1234). Types
// and rcodes outside the counted set are reported as "other". A reply the
// rate limiter then drops or truncates is still counted as built. Counts
// only grow; it is safe to call while the server runs (one atomic load per
// pair, no lock).
func (s *Server) QueryCounts(fn func(qtype string, rcode string, n uint64)) {
	for i := range s.counts.n {
		qt := "other"
		if i < otherSlot {
			qt = dns.TypeToString[countedTypes[i]]
		}
		for j := range s.counts.n[i] {
			n := s.counts.n[i][j].Load()
			if n == 0 {
				continue
			}
			rc := "other"
			switch {
			case j < otherRcode && countedRcodes[j] == dns.RcodeBadVers:
				rc = "BADVERS" // 16 is BADSIG in miekg/dns's table (TSIG)
			case j < otherRcode:
				rc = dns.RcodeToString[countedRcodes[j]]
			}
			fn(qt, rc, n)
		}
	}
}
