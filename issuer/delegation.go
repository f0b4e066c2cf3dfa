package issuer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DelegationError is returned when some CNAME is not in place. Its message
// lists the records to create.
type DelegationError struct {
	Delegations []Delegation
}

func (e *DelegationError) Error() string {
	var b strings.Builder
	b.WriteString("delegation not in place:")
	for _, d := range e.Delegations {
		if !d.OK {
			b.WriteString("\n  ")
			b.WriteString(d.Explain())
		}
	}
	return b.String()
}

// checker resolves _acme-challenge names through recursive resolvers and,
// when authoritative is set, asks the customer zone's own name servers too:
// a resolver's cache may still hold an old answer, and a zone whose servers
// disagree (one not yet updated) fails validation from some of the CA's
// vantage points.
type checker struct {
	resolvers     []string
	timeout       time.Duration
	authoritative bool
	// authPort is the port of the authoritative servers; "53" but in tests.
	authPort string
}

// check fills d.OK/Problem/Found/Detail. Every resolver must see the
// CNAME in place, since the CA may reach any of them, and every
// authoritative server that answers must agree. Authoritative servers that
// cannot be reached from here at all (a firewall, a server that drops our
// queries) do not block a delegation every resolver already sees: d gets a
// Warning instead.
func (c *checker) check(ctx context.Context, d *Delegation) {
	d.OK, d.Problem, d.Found, d.Detail, d.Timeout, d.Warning = false, "", "", "", false, ""
	for _, r := range c.resolvers {
		if !c.checkOne(ctx, r, true, d) {
			return
		}
	}
	if c.authoritative {
		servers, err := c.authServers(ctx, c.resolvers[0], d.Name)
		if err != nil {
			d.OK, d.Warning = true, fmt.Sprintf("every resolver sees the CNAME, but the authoritative servers of %s could not be found: %v", d.Name, err)
			return
		}
		unreachable := 0
		var lastUnreachable string
		for _, srv := range servers {
			probe := *d
			if !c.checkOne(ctx, srv, false, &probe) {
				if probe.Problem == ProblemResolve {
					unreachable++
					lastUnreachable = probe.Detail
					continue
				}
				*d = probe
				d.Detail = "authoritative: " + d.Detail
				return
			}
		}
		if unreachable > 0 {
			d.Warning = fmt.Sprintf("every resolver sees the CNAME, but %d of %d authoritative servers did not answer (%s)", unreachable, len(servers), lastUnreachable)
		}
	}
	d.OK = true
}

// authServers finds the zone holding name (the nearest ancestor owning an
// NS set) through resolver, and returns its servers' addresses.
func (c *checker) authServers(ctx context.Context, resolver, name string) ([]string, error) {
	labels := dns.SplitDomainName(name)
	for k := 1; k < len(labels); k++ {
		zone := dns.Fqdn(strings.Join(labels[k:], "."))
		msg, err := c.exchange(ctx, resolver, zone, dns.TypeNS, true)
		if err != nil {
			return nil, fmt.Errorf("NS %s via %s: %w", zone, resolver, err)
		}
		var hosts []string
		for _, rr := range msg.Answer {
			if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, zone) {
				hosts = append(hosts, ns.Ns)
			}
		}
		if len(hosts) == 0 {
			continue
		}
		var addrs []string
		for _, h := range hosts {
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				m, err := c.exchange(ctx, resolver, h, qt, true)
				if err != nil {
					continue
				}
				for _, rr := range m.Answer {
					switch a := rr.(type) {
					case *dns.A:
						addrs = append(addrs, net.JoinHostPort(a.A.String(), c.authPort))
					case *dns.AAAA:
						addrs = append(addrs, net.JoinHostPort(a.AAAA.String(), c.authPort))
					}
				}
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("no address for the name servers of %s (%s)", zone, strings.Join(hosts, ", "))
		}
		return addrs, nil
	}
	return nil, fmt.Errorf("no zone with NS records above %s", name)
}

// checkOne asks server (a recursive resolver, or with recursive false an
// authoritative server) whether d's CNAME is in place.
func (c *checker) checkOne(ctx context.Context, resolver string, recursive bool, d *Delegation) bool {
	msg, err := c.exchange(ctx, resolver, d.Name, dns.TypeCNAME, recursive)
	if err != nil {
		d.Problem, d.Detail = ProblemResolve, fmt.Sprintf("asking %s: %v", resolver, err)
		d.Timeout = errors.Is(err, errTimeout)
		return false
	}
	if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
		d.Problem, d.Detail = ProblemResolve, fmt.Sprintf("%s answered %s", resolver, dns.RcodeToString[msg.Rcode])
		return false
	}
	for _, rr := range msg.Answer {
		if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, d.Name) {
			if strings.EqualFold(cn.Target, d.Target) {
				return true
			}
			d.Problem, d.Found, d.Detail = ProblemWrongTarget, cn.Target, "via "+resolver
			return false
		}
	}
	// No CNAME: something else may stand there (a flattened CNAME answers
	// TXT and A with the target's data), unless the name does not exist at
	// all: then there is nothing else to ask (one query, not four, for the
	// thousands of names never delegated).
	for _, qt := range []uint16{dns.TypeTXT, dns.TypeA, dns.TypeAAAA} {
		if msg.Rcode == dns.RcodeNameError {
			break
		}
		m, err := c.exchange(ctx, resolver, d.Name, qt, recursive)
		if err != nil || m.Rcode != dns.RcodeSuccess {
			continue
		}
		for _, rr := range m.Answer {
			if strings.EqualFold(rr.Header().Name, d.Name) {
				d.Problem, d.Found, d.Detail = ProblemNotCNAME, strings.Join(strings.Fields(rr.String()), " "), "via "+resolver
				return false
			}
		}
	}
	d.Problem, d.Detail = ProblemMissing, fmt.Sprintf("%s answered %s with no CNAME", resolver, dns.RcodeToString[msg.Rcode])
	return false
}

// exchange asks server, over UDP and then TCP when truncated; recursive
// sets RD (resolvers) or clears it (authoritative servers).
func (c *checker) exchange(ctx context.Context, resolver, name string, qtype uint16, recursive bool) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = recursive
	m.SetEdns0(1232, false)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl := &dns.Client{Net: "udp", Timeout: c.timeout}
	in, _, err := cl.ExchangeContext(ctx, m, resolver)
	if err == nil && in.Truncated {
		cl.Net = "tcp"
		in, _, err = cl.ExchangeContext(ctx, m, resolver)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w after %s", errTimeout, c.timeout)
		}
		return nil, err
	}
	return in, nil
}

// errTimeout marks a query that got no answer in time.
var errTimeout = errors.New("timeout")

// SystemResolvers reads path (normally /etc/resolv.conf) into host:port
// addresses.
func SystemResolvers(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resolvers from %s: %w", path, err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read resolvers from %s: no nameserver lines", path)
	}
	return out, nil
}
