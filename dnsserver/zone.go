package dnsserver

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// ZoneConfig is the static part of the zone, from config.toml.
type ZoneConfig struct {
	// Origin is the zone's name as a lower-case FQDN.
	Origin string
	// NSName is the primary name server (SOA MNAME, and an NS record).
	NSName string
	// NSAdmin is the SOA RNAME.
	NSAdmin string
	// Records are static records (owners inside Origin). NS records at the
	// apex add to NSName; NS records below the apex delegate a child zone.
	Records []dns.RR
	// TXTTTL is the TTL of challenge TXT answers.
	TXTTTL uint32
	// SOATTL is the TTL of the SOA record.
	SOATTL uint32
	// SOAMinimum is the SOA minimum field, the negative-caching TTL.
	SOAMinimum uint32
	// NSTTL is the TTL of the NS record built from NSName.
	NSTTL uint32
}

// staticNode holds the configured RRsets of one owner name.
type staticNode struct {
	rrsets map[uint16][]dns.RR
	// order lists the types in configuration order, for minimal ANY answers.
	order []uint16
}

// zone is the immutable static part of the zone, built once at start.
type zone struct {
	origin     string
	originLbls int
	// originWire is origin in wire format without the root label, for the
	// fast path's suffix match.
	originWire []byte
	cfg        ZoneConfig
	// nodes are keyed by lower-case FQDN; empty non-terminals have a node
	// with no RRsets, so that they answer NODATA rather than NXDOMAIN.
	nodes map[string]*staticNode
	// cuts are names below the apex with NS records: delegations.
	cuts map[string]bool
	apex *staticNode
}

func newZone(cfg ZoneConfig) (*zone, error) {
	origin := strings.ToLower(dns.Fqdn(cfg.Origin))
	if _, ok := dns.IsDomainName(origin); !ok {
		return nil, fmt.Errorf("dnsserver: zone origin %q is not a domain name", cfg.Origin)
	}
	z := &zone{
		origin:     origin,
		originLbls: dns.CountLabel(origin),
		cfg:        cfg,
		nodes:      map[string]*staticNode{},
		cuts:       map[string]bool{},
	}
	wire := make([]byte, 256)
	wl, err := dns.PackDomainName(origin, wire, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("dnsserver: zone origin %q: %w", cfg.Origin, err)
	}
	z.originWire = wire[:wl-1]
	z.apex = z.node(origin)
	nsName := strings.ToLower(dns.Fqdn(cfg.NSName))
	z.add(&dns.NS{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: cfg.NSTTL}, Ns: nsName})
	for _, rr := range cfg.Records {
		name := strings.ToLower(rr.Header().Name)
		if !dns.IsSubDomain(origin, name) {
			return nil, fmt.Errorf("dnsserver: record %s is outside the zone %s", rr.Header().Name, origin)
		}
		if strings.HasPrefix(name, "*.") {
			return nil, fmt.Errorf("dnsserver: record %s: wildcard owners are not supported", rr.Header().Name)
		}
		if rr.Header().Rrtype == dns.TypeSOA {
			return nil, fmt.Errorf("dnsserver: record %s: the SOA is built from the zone settings", rr.Header().Name)
		}
		rr = dns.Copy(rr)
		rr.Header().Name = name
		if ns, ok := rr.(*dns.NS); ok && name == origin && strings.EqualFold(ns.Ns, nsName) {
			continue // already there from NSName
		}
		if rr.Header().Rrtype == dns.TypeNS && name != origin {
			z.cuts[name] = true
		}
		z.add(rr)
	}
	// Mark the empty non-terminals between each owner and the apex.
	for name := range z.nodes {
		for off, end := dns.NextLabel(name, 0); !end; off, end = dns.NextLabel(name, off) {
			parent := name[off:]
			if dns.CountLabel(parent) < z.originLbls {
				break
			}
			z.node(parent)
		}
	}
	return z, nil
}

func (z *zone) node(name string) *staticNode {
	n, ok := z.nodes[name]
	if !ok {
		n = &staticNode{rrsets: map[uint16][]dns.RR{}}
		z.nodes[name] = n
	}
	return n
}

func (z *zone) add(rr dns.RR) {
	n := z.node(rr.Header().Name)
	t := rr.Header().Rrtype
	for _, have := range n.rrsets[t] {
		if dns.IsDuplicate(have, rr) {
			return
		}
	}
	if _, ok := n.rrsets[t]; !ok {
		n.order = append(n.order, t)
	}
	// An RRset has one TTL (RFC 2181 §5.2): the first record's wins.
	if first := n.rrsets[t]; len(first) > 0 {
		rr.Header().Ttl = first[0].Header().Ttl
	}
	n.rrsets[t] = append(n.rrsets[t], rr)
}

// soa builds the SOA with the current serial.
func (z *zone) soa(serial uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: z.origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: z.cfg.SOATTL},
		Ns:      strings.ToLower(dns.Fqdn(z.cfg.NSName)),
		Mbox:    strings.ToLower(dns.Fqdn(z.cfg.NSAdmin)),
		Serial:  serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  1209600,
		Minttl:  z.cfg.SOAMinimum,
	}
}

// negativeSOA is the SOA for the authority section of a negative answer:
// its TTL is min(SOA TTL, minimum) as RFC 2308 §5 asks, so a resolver that
// asked before a value was set retries soon.
func (z *zone) negativeSOA(serial uint32) *dns.SOA {
	soa := z.soa(serial)
	if soa.Minttl < soa.Hdr.Ttl {
		soa.Hdr.Ttl = soa.Minttl
	}
	return soa
}

// glue returns the A/AAAA records of in-zone name servers.
func (z *zone) glue(ns []dns.RR) []dns.RR {
	var extra []dns.RR
	for _, rr := range ns {
		target := strings.ToLower(rr.(*dns.NS).Ns)
		if !dns.IsSubDomain(z.origin, target) {
			continue
		}
		if n, ok := z.nodes[target]; ok {
			extra = append(extra, n.rrsets[dns.TypeA]...)
			extra = append(extra, n.rrsets[dns.TypeAAAA]...)
		}
	}
	return extra
}
