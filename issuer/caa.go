package issuer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/providers"
)

// caaSet is the relevant CAA RRset of a name (RFC 8659 §3): the records at
// the name or, if none, at its closest ancestor that has any.
type caaSet struct {
	// owner is where the records were found; "" when no ancestor has any.
	owner   string
	records []*dns.CAA
}

// caaPolicy is the customer's CAA records for an order's names, read once
// per attempt so that each CA is checked against the same answers.
type caaPolicy struct {
	// sets by base name (a wildcard's base is the name it covers).
	sets map[string]caaSet
	// unknown lists lookups that failed: for those names no CA is skipped,
	// since the CA reads CAA itself and decides.
	unknown []string
}

// lookupCAA reads the relevant CAA set of each base name of domains
// through the configured resolvers, concurrently, each query bounded by
// the resolver timeout and ctx.
func (i *Issuer) lookupCAA(ctx context.Context, domains []string) *caaPolicy {
	p := &caaPolicy{sets: map[string]caaSet{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, d := range domains {
		base := providers.BaseName(d)
		mu.Lock()
		_, seen := p.sets[base]
		if !seen {
			p.sets[base] = caaSet{}
		}
		mu.Unlock()
		if seen {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			set, err := i.checker.relevantCAA(ctx, base)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p.unknown = append(p.unknown, fmt.Sprintf("%s: %v", base, err))
				delete(p.sets, base)
				return
			}
			p.sets[base] = set
		}()
	}
	wg.Wait()
	slices.Sort(p.unknown)
	return p
}

// relevantCAA climbs from name towards the root (the TLD included) and
// returns the first non-empty CAA RRset. A resolver's answer includes the
// CNAME chain, so an aliased name's CAA comes with it.
func (c *checker) relevantCAA(ctx context.Context, name string) (caaSet, error) {
	labels := dns.SplitDomainName(name)
	for k := range labels {
		owner := dns.Fqdn(strings.Join(labels[k:], "."))
		msg, err := c.askResolvers(ctx, owner, dns.TypeCAA)
		if err != nil {
			return caaSet{}, fmt.Errorf("CAA %s: %w", owner, err)
		}
		var set []*dns.CAA
		for _, rr := range msg.Answer {
			if caa, ok := rr.(*dns.CAA); ok {
				set = append(set, caa)
			}
		}
		if len(set) > 0 {
			return caaSet{owner: owner, records: set}, nil
		}
	}
	return caaSet{}, nil
}

// askResolvers asks the resolvers in turn until one answers NOERROR or
// NXDOMAIN.
func (c *checker) askResolvers(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	var last error
	for _, r := range c.resolvers {
		msg, err := c.exchange(ctx, r, name, qtype, true)
		switch {
		case err != nil:
			last = fmt.Errorf("asking %s: %w", r, err)
		case msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError:
			last = fmt.Errorf("%s answered %s", r, dns.RcodeToString[msg.Rcode])
		default:
			return msg, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// caaKnownTags are the property tags whose critical flag we understand
// (RFC 8659, 8657, 9495, 8555 §7.1 contact tags).
var caaKnownTags = []string{"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}

// forbids says why the CAA records forbid a CA known by ids to issue for
// one of domains, or "" when they allow it. A CA with no known identities
// cannot be checked and is allowed: it reads CAA itself.
func (p *caaPolicy) forbids(domains, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	for _, d := range domains {
		base := providers.BaseName(d)
		set, ok := p.sets[base]
		if !ok || len(set.records) == 0 {
			continue
		}
		var issue, wild []string
		hasIssue, hasWild := false, false
		for _, rr := range set.records {
			tag := strings.ToLower(rr.Tag)
			switch tag {
			case "issue":
				hasIssue = true
				issue = append(issue, issuerDomain(rr.Value))
			case "issuewild":
				hasWild = true
				wild = append(wild, issuerDomain(rr.Value))
			default:
				if rr.Flag&128 != 0 && !slices.Contains(caaKnownTags, tag) {
					return fmt.Sprintf("CAA at %s has the critical property %q, which no CA may ignore, for %s", set.owner, rr.Tag, d)
				}
			}
		}
		allowed, has := issue, hasIssue
		if d != base && hasWild {
			allowed, has = wild, true
		}
		if !has {
			continue
		}
		if slices.ContainsFunc(allowed, func(a string) bool { return a != "" && slices.Contains(ids, a) }) {
			continue
		}
		var named []string
		for _, a := range allowed {
			if a != "" && !slices.Contains(named, a) {
				named = append(named, a)
			}
		}
		who := "no CA"
		if len(named) > 0 {
			who = "only " + strings.Join(named, ", ")
		}
		return fmt.Sprintf("CAA at %s allows %s to issue for %s, and this CA is %s", set.owner, who, d, strings.Join(ids, ", "))
	}
	return ""
}

// issuerDomain is the issuer domain name of an issue or issuewild value
// ("letsencrypt.org; accounturi=…" → "letsencrypt.org"; ";" → "").
func issuerDomain(value string) string {
	v, _, _ := strings.Cut(value, ";")
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(v), "."))
}
