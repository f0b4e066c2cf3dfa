package harness

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSTimeout bounds each query the harness sends; everything is on
// loopback, so anything slower is a hung server.
const DNSTimeout = 2 * time.Second

// Query sends one question to addr ("127.0.0.1:port") over UDP with RD set,
// retrying over TCP when the reply is truncated. Any reply, whatever its
// rcode, is returned without error.
func Query(addr, name string, qtype uint16) (*dns.Msg, error) {
	return QueryClass(addr, name, qtype, dns.ClassINET)
}

// QueryClass is Query for a class other than IN (CHAOS for version.server).
func QueryClass(addr, name string, qtype, qclass uint16) (*dns.Msg, error) {
	return exchange(addr, name, qtype, qclass, DNSTimeout)
}

// probeTimeout bounds readiness queries: short, so a server that died or
// never bound is noticed quickly; a loopback answer takes well under 1 ms.
const probeTimeout = 250 * time.Millisecond

func exchange(addr, name string, qtype, qclass uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Question[0].Qclass = qclass
	m.RecursionDesired = true
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.Exchange(m, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("query %s %s @%s: %w", dns.Fqdn(name), dns.TypeToString[qtype], addr, err)
	}
	return r, nil
}

// SOASerial returns the serial of zone's SOA as served by addr. It fails
// unless the reply is NOERROR with the SOA in the answer section.
func SOASerial(addr, zone string) (uint32, error) {
	return soaSerial(addr, zone, DNSTimeout)
}

func soaSerial(addr, zone string, timeout time.Duration) (uint32, error) {
	r, err := exchange(addr, zone, dns.TypeSOA, dns.ClassINET, timeout)
	if err != nil {
		return 0, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("soa %s @%s: rcode %s", dns.Fqdn(zone), addr, dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("soa %s @%s: no SOA in answer:\n%s", dns.Fqdn(zone), addr, r)
}

// ZoneSerial parses a zone file (origin zone) and returns its SOA serial, so
// reload helpers can wait for exactly the content they wrote.
func ZoneSerial(zone, content string) (uint32, error) {
	zp := dns.NewZoneParser(strings.NewReader(content), dns.Fqdn(zone), "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			return soa.Serial, nil
		}
	}
	if err := zp.Err(); err != nil {
		return 0, fmt.Errorf("parse zone %s: %w", zone, err)
	}
	return 0, fmt.Errorf("parse zone %s: no SOA record", zone)
}

// waitSerial polls addr until zone's SOA serial equals want.
func waitSerial(addr, zone string, want uint32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := soaSerial(addr, zone, probeTimeout)
		if err == nil && got == want {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("serial is %d", got)
			}
			return fmt.Errorf("zone %s @%s: serial %d not served after %s: %w", zone, addr, want, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually calls cond every interval until it returns nil, and fails the
// test with cond's last error after timeout. Use it for conditions that
// settle asynchronously, such as a record becoming visible through a
// resolver.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, interval, cond); err != nil {
		t.Fatalf("harness: %s: %v", what, err)
	}
}

func poll(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// ErrNoAnswer is returned (wrapped) by Resolve for a NOERROR reply without
// records of the asked type.
var ErrNoAnswer = errors.New("no matching answer")

// Resolve queries addr and returns the answer records of type qtype (after
// any CNAME chain the server included). A reply with a non-NOERROR rcode, or
// without such records, is an error.
func Resolve(addr, name string, qtype uint16) ([]dns.RR, *dns.Msg, error) {
	r, err := Query(addr, name, qtype)
	if err != nil {
		return nil, nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, r, fmt.Errorf("resolve %s %s @%s: rcode %s", dns.Fqdn(name), dns.TypeToString[qtype], addr, dns.RcodeToString[r.Rcode])
	}
	var rrs []dns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) == 0 {
		return nil, r, fmt.Errorf("resolve %s %s @%s: %w:\n%s", dns.Fqdn(name), dns.TypeToString[qtype], addr, ErrNoAnswer, r)
	}
	return rrs, r, nil
}
