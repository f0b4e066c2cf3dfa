package issuer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/delegated/delegated/operator"
	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// The public operations, as the CLI and the operator API call them.

// claimWait is how long a change to a certificate waits for other work on
// it to end before it is refused as busy.
const claimWait = 3 * time.Second

// withClaimWait is withClaim for an operator's action: it waits up to
// claimWait for short work holding the claim to end.
func (i *Issuer) withClaimWait(ctx context.Context, name string, fn func(ctx context.Context) bool) bool {
	deadline := time.Now().Add(claimWait)
	for !i.withClaim(name, fn) {
		if time.Now().After(deadline) {
			return false
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	return true
}

// Issue records the request, assigns challenge subdomains, checks the
// delegation and, when it is in place, queues an order. It returns the
// certificate with its delegation records. A certificate already active
// for the same domains is returned unchanged.
func (i *Issuer) Issue(ctx context.Context, req Request) (Cert, error) {
	name, domains, err := normalize(req)
	if err != nil {
		return Cert{}, err
	}
	if err := checkOutsideZone(domains, i.opts.Zone); err != nil {
		return Cert{}, err
	}
	if err := i.checkPin(req.CA); err != nil {
		return Cert{}, err
	}
	method, profile, err := i.requestOptions(ctx, req)
	if err != nil {
		return Cert{}, err
	}
	dels, err := i.assignFor(ctx, domains, method, req.CA)
	if err != nil {
		return Cert{}, err
	}
	var (
		v    Cert
		ierr error
	)
	issue := func(ctx context.Context) bool {
		c, err := i.store.CertificateByName(ctx, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			c = store.Certificate{Name: name, Domains: domains}
		case err != nil:
			ierr = err
			return false
		case sameRequest(c, domains, method, profile) && Status(c.Status) == StatusActive && !i.needsOtherCA(c, req.CA):
			if c.CAPin != req.CA {
				c.CAPin = req.CA
				ierr = i.save(ctx, &c)
			}
			v = i.view(c)
			return false
		}
		// A changed domain list (or a pin to another CA) keeps the old
		// material (still deployed) until the new certificate exists.
		prev := c
		c.Domains, c.CAPin = domains, req.CA
		c.Challenge, c.Profile = method, profile
		c.Attempts = 0
		c.NextAttempt = time.Time{}
		i.checkDelegations(ctx, dels)
		if ierr = i.applyDelegation(ctx, &c, dels); ierr != nil {
			return false
		}
		if methodOf(prev) == ChallengeDNSPersist01 {
			if err := i.syncPersist(ctx, prev.Domains); err != nil {
				i.log.Warn("updating dns-persist-01 records failed", "cert", name, "err", err)
			}
		}
		v = i.view(c)
		return Status(c.Status) == StatusProcessing
	}
	// Short work holds a certificate's claim too (planning its renewal
	// right after it is issued): a change waits up to claimWait for it
	// before it is refused as busy.
	deadline := time.Now().Add(claimWait)
	for !i.withClaim(name, issue) {
		// An attempt is in flight: for the same domains the caller may
		// follow it; a change must wait until it ends.
		c, err := i.store.CertificateByName(ctx, name)
		if err == nil && sameRequest(c, domains, method, profile) && c.CAPin == req.CA {
			v = i.view(c)
			break
		}
		if err != nil || time.Now().After(deadline) {
			return Cert{}, errBusy(name)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return Cert{}, ctx.Err()
		case <-t.C:
		}
	}
	if ierr != nil {
		return Cert{}, ierr
	}
	v.Delegations = dels
	return v, nil
}

// Retry forces the next attempt on name now (a failed certificate starts
// over with a fresh attempt count; a pending one is re-checked).
func (i *Issuer) Retry(ctx context.Context, name string) (Cert, error) {
	c, err := i.load(ctx, name)
	if err != nil {
		return Cert{}, err
	}
	var (
		dels []Delegation
		rerr error
	)
	claimed := i.withClaim(name, func(ctx context.Context) bool {
		if c, rerr = i.store.CertificateByName(ctx, name); rerr != nil {
			return false
		}
		if Status(c.Status) == StatusActive {
			// Nothing to retry; renew --force replaces an active certificate.
			return false
		}
		c.Status, c.Attempts, c.NextAttempt = string(StatusPendingDelegation), 0, time.Time{}
		if dels, rerr = i.assignFor(ctx, c.Domains, methodOf(c), c.CAPin); rerr != nil {
			return false
		}
		i.checkDelegations(ctx, dels)
		if rerr = i.applyDelegation(ctx, &c, dels); rerr != nil {
			return false
		}
		return Status(c.Status) == StatusProcessing
	})
	if rerr != nil {
		return Cert{}, rerr
	}
	// Not claimed: the attempt is running now and the caller may follow it.
	v := i.view(c)
	if claimed {
		v.Delegations = dels
	}
	return v, nil
}

// RevocationReasons maps the CLI's words to RFC 5280 reason codes.
var revocationReasons = map[string]uint{
	"unspecified": 0, "keycompromise": 1, "affiliationchanged": 3,
	"superseded": 4, "cessationofoperation": 5,
}

// Revoke revokes name's certificate at the CA.
func (i *Issuer) Revoke(ctx context.Context, name, reason string) (Cert, error) {
	code, ok := revocationReasons[strings.ToLower(reason)]
	if reason == "" {
		code, ok = 0, true
	}
	if !ok {
		return Cert{}, fmt.Errorf("%w: reason %q: expected unspecified, keycompromise, superseded, cessationofoperation or affiliationchanged", ErrInvalid, reason)
	}
	var (
		c    store.Certificate
		rerr error
	)
	claimed := i.withClaimWait(ctx, name, func(ctx context.Context) bool {
		if c, rerr = i.load(ctx, name); rerr != nil {
			return false
		}
		if c.CertPEM == "" {
			rerr = fmt.Errorf("%w: %s has no issued certificate to revoke", ErrInvalid, name)
			return false
		}
		// Revocation goes to the CA that issued the certificate.
		ca := i.caOf(c)
		rerr = i.revoke(ctx, ca, c.CertPEM, code)
		if rerr != nil && accountMissing(rerr) && i.reregister(ctx, ca) == nil {
			rerr = i.revoke(ctx, ca, c.CertPEM, code)
		}
		if rerr != nil {
			return false
		}
		c.Status, c.LastError, c.NextAttempt = string(StatusRevoked), "", time.Time{}
		if rerr = i.save(ctx, &c); rerr != nil {
			return false
		}
		i.log.Info("certificate revoked", "cert", name, "status", StatusRevoked, "serial", c.Serial, "reason", reason)
		return false
	})
	if !claimed {
		return Cert{}, errBusy(name)
	}
	if rerr != nil {
		return Cert{}, rerr
	}
	return i.view(c), nil
}

// Delete removes name's stored material and deployed files, and the
// challenge subdomains of base names no other certificate uses (they stop
// answering; a later request assigns new ones). The row and the released
// subdomains go in one transaction, fenced by the certificate's lease.
func (i *Issuer) Delete(ctx context.Context, name string) error {
	var derr error
	claimed := i.withClaimWait(ctx, name, func(hctx context.Context) bool {
		c, err := i.load(ctx, name)
		if err != nil {
			derr = err
			return false
		}
		f, ok := i.fence(name)
		if !ok {
			derr = errBusy(name)
			return false
		}
		var bases []string
		for _, d := range c.Domains {
			if b := providers.BaseName(d); !slices.Contains(bases, b) {
				bases = append(bases, b)
			}
		}
		released, err := i.store.DeleteCertificateReleasing(ctx, name, f, bases)
		if errors.Is(err, store.ErrNotFound) {
			derr = fmt.Errorf("%w: %s", ErrNotFound, name)
			return false
		}
		if err != nil {
			derr = err
			return false
		}
		for _, n := range released {
			i.log.Info("challenge subdomain released", "base_name", n.BaseName, "subdomain", n.Subdomain)
		}
		// A dns-persist-01 record no remaining certificate uses goes too
		// (or loses the wildcard policy only this one needed).
		if err := i.syncPersist(ctx, c.Domains); err != nil {
			derr = err
			return false
		}
		derr = removeDeployed(pathsFor(i.opts.DeployDir, name))
		i.log.Info("certificate deleted", "cert", name)
		return false
	})
	if !claimed {
		return errBusy(name)
	}
	return derr
}

// Certificates lists the certificates f selects, from summary columns.
func (i *Issuer) Certificates(ctx context.Context, f operator.Filter) ([]Cert, error) {
	certs, err := i.store.CertificateSummaries(ctx, store.CertificateFilter{Status: string(f.Status), Domain: f.Domain})
	if err != nil {
		return nil, err
	}
	out := make([]Cert, 0, len(certs))
	for _, c := range certs {
		out = append(out, i.view(c))
	}
	return out, nil
}

// Certificate returns one certificate.
func (i *Issuer) Certificate(ctx context.Context, name string) (Cert, error) {
	c, err := i.load(ctx, name)
	if err != nil {
		return Cert{}, err
	}
	return i.view(c), nil
}

// load reads the certificate called name; ErrNotFound (wrapped, with the
// name) when there is none.
func (i *Issuer) load(ctx context.Context, name string) (store.Certificate, error) {
	c, err := i.store.CertificateByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Certificate{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return c, err
}

// Delegation returns the records to create for a certificate (or all
// certificates when name is empty) with a fresh check of each, on at most
// CheckWorkers at once. A pending certificate whose delegation is now in
// place starts its order.
func (i *Issuer) Delegation(ctx context.Context, name string) ([]Cert, error) {
	var certs []store.Certificate
	if name != "" {
		c, err := i.load(ctx, name)
		if err != nil {
			return nil, err
		}
		certs = []store.Certificate{c}
	} else {
		var err error
		if certs, err = i.store.CertificateSummaries(ctx, store.CertificateFilter{}); err != nil {
			return nil, err
		}
	}
	out := make([]Cert, len(certs))
	errs := make([]error, len(certs))
	sem := make(chan struct{}, i.opts.CheckWorkers)
	var wg sync.WaitGroup
	for k, c := range certs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dels, err := i.checkAndApply(ctx, c, true)
			if err != nil {
				errs[k] = err
				return
			}
			if c, err = i.store.CertificateByName(ctx, c.Name); err != nil {
				errs[k] = err
				return
			}
			out[k] = i.view(c)
			out[k].Delegations = dels
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// State reports the queues and the CAs with their pauses.
func (i *Issuer) State(ctx context.Context) operator.IssuerState {
	s := operator.IssuerState{Queued: map[string]int{}, Running: map[string]int{}}
	for _, q := range []*workQueue{i.checks, i.orders, i.plans} {
		s.Queued[q.name], s.Running[q.name] = q.depth()
	}
	s.CAs = i.caStates(ctx)
	s.PausedUntil, s.PauseReason = allPaused(s.CAs)
	return s
}
