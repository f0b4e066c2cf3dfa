package dnsserver

import (
	"strings"

	"github.com/miekg/dns"
)

// result is the kind of answer a lookup produced; it decides rcode and AA
// in one place (answer).
type result int

const (
	success result = iota
	noData
	nameError
	delegation
	refused
)

func (r result) String() string {
	switch r {
	case success:
		return "success"
	case noData:
		return "nodata"
	case nameError:
		return "nxdomain"
	case delegation:
		return "delegation"
	case refused:
		return "refused"
	}
	return "unknown"
}

// sections of a reply. RRs in answer are owned by the caller (copies), so
// it may set their owner to the query's spelling.
type sections struct {
	answer, ns, extra []dns.RR
}

// lookup answers qname (lower case, FQDN) and qtype from the static zone
// and the view. It never blocks and reads only immutable data.
func (s *Server) lookup(qname string, qtype uint16) (result, sections) {
	z := s.zone
	if !dns.IsSubDomain(z.origin, qname) {
		return refused, sections{}
	}
	serial := s.view.Serial()
	if qtype == dns.TypeAXFR || qtype == dns.TypeIXFR {
		return refused, sections{}
	}

	// A delegation at or above qname (below the apex) hands the query off.
	if len(z.cuts) > 0 {
		for name := qname; dns.CountLabel(name) > z.originLbls; {
			if z.cuts[name] && !(name == qname && qtype == dns.TypeDS) {
				ns := copyRRs(z.nodes[name].rrsets[dns.TypeNS])
				return delegation, sections{ns: ns, extra: z.glue(ns)}
			}
			off, _ := dns.NextLabel(name, 0)
			name = name[off:]
		}
	}

	if qname == z.origin && s.signer != nil {
		if rrs := s.signer.apexRRs(qtype); rrs != nil {
			return success, sections{answer: rrs}
		}
	}
	if node, ok := z.nodes[qname]; ok {
		return s.staticAnswer(qname, qtype, node, serial)
	}

	// <label>.<origin>: a registered subdomain?
	if dns.CountLabel(qname) == z.originLbls+1 {
		label := qname[:strings.IndexByte(qname, '.')]
		if e, ok := s.view.lookup(label); ok {
			if (qtype == dns.TypeTXT || qtype == dns.TypeANY) && e.hasValues() {
				return success, sections{answer: s.txtRRs(qname, e.values())}
			}
			return noData, sections{ns: []dns.RR{z.negativeSOA(serial)}}
		}
	}
	return nameError, sections{ns: []dns.RR{z.negativeSOA(serial)}}
}

func (s *Server) staticAnswer(qname string, qtype uint16, node *staticNode, serial uint32) (result, sections) {
	z := s.zone
	apex := qname == z.origin
	switch {
	case apex && qtype == dns.TypeSOA:
		return success, sections{answer: []dns.RR{z.soa(serial)}}
	case qtype == dns.TypeANY:
		// RFC 8482: one RRset, never everything.
		if apex {
			return success, sections{answer: []dns.RR{z.soa(serial)}}
		}
		if len(node.order) > 0 {
			return success, sections{answer: copyRRs(node.rrsets[node.order[0]])}
		}
	default:
		if rrs, ok := node.rrsets[qtype]; ok {
			answer := copyRRs(rrs)
			var extra []dns.RR
			if qtype == dns.TypeNS {
				extra = z.glue(rrs)
			}
			return success, sections{answer: answer, extra: extra}
		}
		if cname, ok := node.rrsets[dns.TypeCNAME]; ok {
			return success, sections{answer: z.chase(copyRRs(cname), qtype)}
		}
	}
	return noData, sections{ns: []dns.RR{z.negativeSOA(serial)}}
}

func (s *Server) txtRRs(owner string, values []string) []dns.RR {
	rrs := make([]dns.RR, len(values))
	for i, v := range values {
		rrs[i] = &dns.TXT{
			Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: s.zone.cfg.TXTTTL},
			Txt: splitTXT(v),
		}
	}
	return rrs
}

func copyRRs(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

// chase follows a CNAME chain through the static zone and appends what the
// targets hold of qtype, as an authoritative server does (RFC 1034 §4.3.2);
// a target outside the zone or in the view is left to the resolver. The
// hop limit guards against configured loops.
func (z *zone) chase(answer []dns.RR, qtype uint16) []dns.RR {
	for range 8 {
		cname, ok := answer[len(answer)-1].(*dns.CNAME)
		if !ok {
			return answer
		}
		node, ok := z.nodes[strings.ToLower(cname.Target)]
		if !ok {
			return answer
		}
		if rrs, ok := node.rrsets[qtype]; ok {
			return append(answer, copyRRs(rrs)...)
		}
		next, ok := node.rrsets[dns.TypeCNAME]
		if !ok {
			return answer
		}
		answer = append(answer, copyRRs(next)...)
	}
	return answer
}

// splitTXT cuts a value into character-strings of at most 255 bytes, the
// wire limit; a client reads them back concatenated (RFC 7208 §3.3 style).
func splitTXT(v string) []string {
	if len(v) <= 255 {
		return []string{v}
	}
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	return append(parts, v)
}
