package issuer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// Name and subdomain assignment: a request's names checked and
// normalised, and each base name's challenge subdomain reserved.

// normalize lower-cases, de-duplicates and validates the request (the
// rules are in names.go).
func normalize(req Request) (string, []string, error) {
	name := strings.TrimSpace(req.Name)
	if err := checkCertName(name); err != nil {
		return "", nil, err
	}
	if len(req.Domains) == 0 {
		return "", nil, fmt.Errorf("%w: no domains", ErrInvalid)
	}
	var out []string
	for _, d := range req.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if err := checkDomain(d); err != nil {
			return "", nil, err
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return name, out, nil
}

// assign returns the delegation records for domains, reserving a challenge
// subdomain (and its account) for each base name that has none yet, so the
// name exists in our zone.
func (i *Issuer) assign(ctx context.Context, domains []string) ([]Delegation, error) {
	var dels []Delegation
	seen := map[string]bool{}
	for _, d := range domains {
		base := providers.BaseName(d)
		if seen[base] {
			continue
		}
		seen[base] = true
		if i.isSelf(base) {
			d, err := i.selfDelegation(ctx, base)
			if err != nil {
				return nil, err
			}
			dels = append(dels, d)
			continue
		}
		n, err := i.store.ChallengeNameByBase(ctx, base)
		if errors.Is(err, store.ErrNotFound) {
			n, err = i.createChallengeName(ctx, base)
		}
		if err != nil {
			return nil, err
		}
		dels = append(dels, i.delegationFor(n))
	}
	return dels, nil
}

// delegationFor is the record pointing n's base name at its subdomain.
func (i *Issuer) delegationFor(n store.ChallengeName) Delegation {
	return Delegation{
		BaseName: n.BaseName,
		Name:     "_acme-challenge." + n.BaseName + ".",
		Target:   n.Subdomain + "." + i.opts.Zone,
	}
}

func (i *Issuer) createChallengeName(ctx context.Context, base string) (store.ChallengeName, error) {
	return i.createChallengeNameWith(ctx, base, uuid.NewString())
}

// newChallengeAccount is a fresh challenge account for base at subdomain.
// Nobody ever uses its key (the issuer writes values directly): its hash
// is of a secret nobody knows, so the account is unusable through the API.
func (i *Issuer) newChallengeAccount(base, subdomain string) store.ChallengeAccount {
	acct := store.Account{Username: uuid.NewString(), KeyHash: i.noKeyHash, Subdomain: subdomain}
	return store.ChallengeAccount{Account: acct, Name: store.ChallengeName{BaseName: base, Subdomain: subdomain, Username: acct.Username}}
}

// createChallengeNameWith reserves subdomain for base: the account and the
// mapping in one transaction. A concurrent request that reserved base
// first wins, and its mapping is used.
func (i *Issuer) createChallengeNameWith(ctx context.Context, base, subdomain string) (store.ChallengeName, error) {
	r := i.newChallengeAccount(base, subdomain)
	if err := i.store.ReserveChallengeNames(ctx, []store.ChallengeAccount{r}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return i.store.ChallengeNameByBase(ctx, base)
		}
		return store.ChallengeName{}, err
	}
	i.log.Info("challenge subdomain assigned", "base_name", base, "subdomain", subdomain)
	return r.Name, nil
}
