package dnsserver

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Signed answers (DO=1). Authenticated denial uses compact denial of
// existence (RFC 9824, "black lies" as Cloudflare and NS1 deploy it): the
// negative answer for name N carries one NSEC whose owner is N and whose
// next name is \000.N, the immediate successor, so it proves nothing about
// any other name: no zone walking, and one signature per answer instead of
// two or three. Its type bitmap lists N's real types (NODATA), only RRSIG
// and NSEC (an empty non-terminal), or adds NXNAME (a name that does not
// exist). A name that does not exist is answered NOERROR, as the NSEC
// asserts the name; a querier that sets the CO flag (Compact Answers OK)
// gets NXDOMAIN back. Answers to DO=0 queries are not touched at all.

// signSections adds what a DO=1 reply carries: RRSIGs after each
// authoritative RRset and the NSEC of a negative answer or of an insecure
// delegation. co is the query's CO flag.
func (s *Server) signSections(qname string, qtype uint16, res result, sec sections, co bool) (result, sections, error) {
	sg := s.signer
	var err error
	if sec.answer, err = sg.signAll(sec.answer); err != nil {
		return res, sec, err
	}
	switch res {
	case noData, nameError:
		ttl := uint32(0)
		if len(sec.ns) > 0 {
			ttl = sec.ns[0].Header().Ttl
		}
		types := []uint16{dns.TypeNXNAME}
		if res == noData {
			types = s.typesAt(qname)
		}
		nsec := compactNSEC(qname, ttl, types)
		if sec.ns, err = sg.signAll(append(sec.ns, nsec)); err != nil {
			return res, sec, err
		}
		if res == nameError && !co {
			res = noData
		}
	case delegation:
		// The NS set at a cut is the child's, unsigned; an NSEC at the cut
		// without DS proves the delegation insecure (RFC 4035 §3.1.4).
		cut := sec.ns[0].Header().Name
		nsec := compactNSEC(cut, s.zone.negativeSOA(0).Hdr.Ttl, []uint16{dns.TypeNS})
		signed, err := sg.signAll([]dns.RR{nsec})
		if err != nil {
			return res, sec, err
		}
		sec.ns = append(sec.ns, signed...)
		return res, sec, nil
	}
	if sec.extra, err = sg.signAll(sec.extra); err != nil {
		return res, sec, err
	}
	return res, sec, nil
}

// compactNSEC is the NSEC of RFC 9824 for owner: next name \000.owner,
// the given types plus RRSIG and NSEC, TTL that of the negative SOA (RFC
// 9077).
func compactNSEC(owner string, ttl uint32, types []uint16) *dns.NSEC {
	bitmap := append([]uint16{dns.TypeRRSIG, dns.TypeNSEC}, types...)
	slices.Sort(bitmap)
	return &dns.NSEC{
		Hdr:        dns.RR_Header{Name: owner, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: ttl},
		NextDomain: `\000.` + owner,
		TypeBitMap: slices.Compact(bitmap),
	}
}

// typesAt lists the types that exist at qname (lower case, in the zone),
// for a NODATA answer's NSEC bitmap.
func (s *Server) typesAt(qname string) []uint16 {
	z := s.zone
	var types []uint16
	if node, ok := z.nodes[qname]; ok {
		types = append(types, node.order...)
	}
	if qname == z.origin {
		types = append(types, dns.TypeSOA, dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY)
		return types
	}
	if dns.CountLabel(qname) == z.originLbls+1 {
		label := qname[:strings.IndexByte(qname, '.')]
		if e, ok := s.view.lookup(label); ok && e.hasValues() {
			types = append(types, dns.TypeTXT)
		}
	}
	return types
}

// signAll returns rrs with the RRSIGs of each RRset (a run of RRs with one
// owner and type) after it.
func (sg *signer) signAll(rrs []dns.RR) ([]dns.RR, error) {
	if len(rrs) == 0 {
		return rrs, nil
	}
	out := make([]dns.RR, 0, len(rrs)+4)
	for start := 0; start < len(rrs); {
		h := rrs[start].Header()
		end := start + 1
		for end < len(rrs) && rrs[end].Header().Rrtype == h.Rrtype && strings.EqualFold(rrs[end].Header().Name, h.Name) {
			end++
		}
		out = append(out, rrs[start:end]...)
		if h.Rrtype != dns.TypeOPT && h.Rrtype != dns.TypeRRSIG {
			sigs, err := sg.sign(rrs[start:end])
			if err != nil {
				return nil, err
			}
			out = append(out, sigs...)
		}
		start = end
	}
	return out, nil
}
