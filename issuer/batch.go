package issuer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/delegated/delegated/operator"
	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// IssueBatch records many requests at once (bulk onboarding). Every request
// is validated first; any bad one refuses the whole batch with a
// *operator.BatchError naming each (lines[k] is request k's line in the
// operator's file; nil numbers them from 1) and nothing is created. New
// certificates, with their challenge subdomains, are created in one
// transaction and checked by the scheduler's check pool (no inline check,
// no waiting); a certificate that exists with the same domains is left
// alone, so running the same batch again changes nothing. A request that
// names no validation method or profile gets the configured defaults.
func (i *Issuer) IssueBatch(ctx context.Context, reqs []Request, lines []int) (operator.BatchResult, error) {
	line := func(k int) int {
		if k < len(lines) {
			return lines[k]
		}
		return k + 1
	}
	items := make([]item, len(reqs))
	var problems []operator.LineProblem
	seen := map[string]int{}
	for k, r := range reqs {
		name, domains, err := normalize(r)
		if err == nil {
			err = checkOutsideZone(domains, i.opts.Zone)
		}
		if err != nil {
			problems = append(problems, operator.LineProblem{Line: line(k), Error: err.Error()})
			continue
		}
		if prev, dup := seen[name]; dup {
			problems = append(problems, operator.LineProblem{Line: line(k), Error: fmt.Sprintf("certificate name %q is also on line %d", name, prev)})
			continue
		}
		seen[name] = line(k)
		method, profile, err := i.requestOptions(ctx, r)
		if err != nil {
			problems = append(problems, operator.LineProblem{Line: line(k), Error: err.Error()})
			continue
		}
		items[k] = item{name: name, domains: domains, method: method, profile: profile}
	}
	if len(problems) > 0 {
		return operator.BatchResult{}, &operator.BatchError{Problems: problems}
	}
	if len(reqs) == 0 {
		return operator.BatchResult{Certificates: []Cert{}}, nil
	}
	existing, err := i.store.CertificateSummaries(ctx, store.CertificateFilter{})
	if err != nil {
		return operator.BatchResult{}, err
	}
	have := make(map[string]store.Certificate, len(existing))
	for _, c := range existing {
		have[c.Name] = c
	}
	// Certificates whose domains change are taken first, under their
	// leases: one in flight refuses the batch before anything is created.
	var res operator.BatchResult
	var changed []item
	for k, it := range items {
		c, ok := have[it.name]
		if ok && !it.same(c) {
			changed = append(changed, it)
			if i.busyHere(it.name) {
				problems = append(problems, operator.LineProblem{Line: line(k), Error: errBusy(it.name).Error()})
			}
		}
	}
	if len(problems) > 0 {
		return operator.BatchResult{}, &operator.BatchError{Problems: problems}
	}
	for try := 0; ; try++ {
		// Methods other than dns-01 name records of their own (per
		// account, or the lasting persist record): assigned one by one,
		// first, so a dns-01 request for the same base name finds the
		// subdomain they reserved.
		itemDels := make([][]Delegation, len(items))
		for k, it := range items {
			if it.method != ChallengeDNS01 {
				if itemDels[k], err = i.assignFor(ctx, it.domains, it.method, ""); err != nil {
					return operator.BatchResult{}, fmt.Errorf("line %d: %w", line(k), err)
				}
			}
		}
		dels, reserve, err := i.assignBatch(ctx, items)
		if err != nil {
			return operator.BatchResult{}, err
		}
		var fresh []store.Certificate
		now := i.opts.Now()
		for _, it := range items {
			if _, ok := have[it.name]; !ok {
				fresh = append(fresh, store.Certificate{
					Name: it.name, Domains: it.domains, Status: string(StatusPendingDelegation),
					LastError: "delegation not checked yet", NextAction: now,
					Challenge: it.method, Profile: it.profile,
				})
			}
		}
		err = i.store.CreateCertificates(ctx, reserve, fresh)
		if errors.Is(err, store.ErrConflict) && try == 0 {
			// A concurrent request reserved one of the base names: read
			// the mappings again and use theirs.
			continue
		}
		if err != nil {
			return operator.BatchResult{}, err
		}
		for _, r := range reserve {
			i.log.Debug("challenge subdomain assigned", "base_name", r.Name.BaseName, "subdomain", r.Name.Subdomain)
		}
		for _, it := range changed {
			if err := i.changeDomains(ctx, it); err != nil {
				return operator.BatchResult{}, err
			}
		}
		res.Certificates = make([]Cert, 0, len(items))
		for k, it := range items {
			c, ok := have[it.name]
			switch {
			case !ok:
				res.Created++
				c = store.Certificate{Name: it.name, Domains: it.domains, Status: string(StatusPendingDelegation), LastError: "delegation not checked yet", NextAction: now,
					Challenge: it.method, Profile: it.profile}
			case !it.same(c):
				res.Changed++
				c.Domains, c.Status = it.domains, string(StatusPendingDelegation)
				c.Challenge, c.Profile = it.method, it.profile
			default:
				res.Unchanged++
			}
			v := i.view(c)
			if it.method != ChallengeDNS01 {
				v.Delegations = itemDels[k]
			} else {
				for _, base := range baseNames(it.domains) {
					v.Delegations = append(v.Delegations, dels[base])
				}
			}
			res.Certificates = append(res.Certificates, v)
		}
		break
	}
	i.log.Info("batch recorded", "certificates", len(items), "created", res.Created, "changed", res.Changed, "unchanged", res.Unchanged)
	i.poke()
	return res, nil
}

// item is one request of a batch, normalised, with its validation method
// and profile resolved against the defaults.
type item struct {
	name            string
	domains         []string
	method, profile string
}

// same reports whether c already is what it asks for.
func (it item) same(c store.Certificate) bool {
	return sameRequest(c, it.domains, it.method, it.profile)
}

// baseNames are the distinct base names of domains, in order.
func baseNames(domains []string) []string {
	var out []string
	for _, d := range domains {
		if b := providers.BaseName(d); !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// assignBatch returns the delegation record of every base name of items,
// and the reservations to create for those without a subdomain yet.
func (i *Issuer) assignBatch(ctx context.Context, items []item) (map[string]Delegation, []store.ChallengeAccount, error) {
	dels := map[string]Delegation{}
	var reserve []store.ChallengeAccount
	for _, it := range items {
		if it.method != ChallengeDNS01 {
			continue
		}
		for _, base := range baseNames(it.domains) {
			if _, ok := dels[base]; ok {
				continue
			}
			if i.isSelf(base) {
				d, err := i.selfDelegation(ctx, base)
				if err != nil {
					return nil, nil, err
				}
				dels[base] = d
				continue
			}
			n, err := i.store.ChallengeNameByBase(ctx, base)
			if errors.Is(err, store.ErrNotFound) {
				r := i.newChallengeAccount(base, uuid.NewString())
				reserve = append(reserve, r)
				n, err = r.Name, nil
			}
			if err != nil {
				return nil, nil, err
			}
			dels[base] = i.delegationFor(n)
		}
	}
	return dels, reserve, nil
}

// changeDomains replaces an existing certificate's domains, method and
// profile; it waits in pending delegation for a check soon (its old
// material keeps serving until the new certificate exists).
func (i *Issuer) changeDomains(ctx context.Context, it item) error {
	var err error
	if !i.withClaim(it.name, func(hctx context.Context) bool {
		var c store.Certificate
		if c, err = i.store.CertificateByName(ctx, it.name); err != nil {
			return false
		}
		prev := c
		c.Domains, c.Status, c.Attempts, c.NextAttempt, c.CheckFailures = it.domains, string(StatusPendingDelegation), 0, time.Time{}, 0
		c.Challenge, c.Profile = it.method, it.profile
		c.LastError = "delegation not checked yet"
		c.NextAction = i.opts.Now().Add(time.Second)
		if err = i.save(hctx, &c); err != nil {
			return false
		}
		if methodOf(prev) == ChallengeDNSPersist01 {
			if perr := i.syncPersist(hctx, prev.Domains); perr != nil {
				i.log.Warn("updating dns-persist-01 records failed", "cert", it.name, "err", perr)
			}
		}
		return false
	}) {
		return errBusy(it.name)
	}
	return err
}
