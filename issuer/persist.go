package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"

	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// persistLabel is the name dns-persist-01 reads under each domain.
const persistLabel = "_validation-persist"

// persistStore is what dns-persist-01 needs from the store beyond the
// per-order values.
type persistStore interface {
	SetPersistentValue(ctx context.Context, subdomain, txt string) error
	Values(ctx context.Context, subdomain string) ([]string, error)
	DeleteChallengeName(ctx context.Context, baseName string) error
	DeleteAccount(ctx context.Context, username string) error
}

// persistKey is the challenge-names key of base's dns-persist-01
// subdomain. A base name never starts with "_" (isHostname), so the keys
// never collide with a base name's own.
func persistKey(base string) string { return persistLabel + "." + base }

// PersistValue is the dns-persist-01 TXT value: the CA's issuer domain name
// and the account allowed to issue, with policy=wildcard when wildcard
// certificates (and names below the domain) are allowed too
// (draft-ietf-acme-dns-persist, section 3; RFC 8659 issue-value syntax).
func PersistValue(issuerDomain, accountURI string, wildcard bool) string {
	v := issuerDomain + "; accounturi=" + accountURI
	if wildcard {
		v += "; policy=wildcard"
	}
	return v
}

// persistParts splits a value PersistValue wrote into its issuer domain
// name, account URI and wildcard policy.
func persistParts(v string) (issuerDomain, accountURI string, wildcard bool) {
	fields := strings.Split(v, ";")
	issuerDomain = strings.TrimSpace(fields[0])
	for _, f := range fields[1:] {
		tag, val, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch strings.ToLower(strings.TrimSpace(tag)) {
		case "accounturi":
			accountURI = strings.TrimSpace(val)
		case "policy":
			wildcard = strings.EqualFold(strings.TrimSpace(val), "wildcard")
		}
	}
	return issuerDomain, accountURI, wildcard
}

// assignPersist returns the _validation-persist records for domains,
// creating each base name's persist subdomain when it has none.
func (i *Issuer) assignPersist(ctx context.Context, domains []string) ([]Delegation, error) {
	var dels []Delegation
	for _, base := range baseNames(domains) {
		n, err := i.store.ChallengeNameByBase(ctx, persistKey(base))
		if errors.Is(err, store.ErrNotFound) {
			n, err = i.createChallengeName(ctx, persistKey(base))
		}
		if err != nil {
			return nil, err
		}
		dels = append(dels, Delegation{BaseName: base, Name: persistLabel + "." + base + ".", Target: n.Subdomain + "." + i.opts.Zone})
	}
	return dels, nil
}

// presentPersist publishes base's lasting dns-persist-01 record for the
// challenge chal, unless it is there already (a renewal reuses it).
func (i *Issuer) presentPersist(ctx context.Context, ca *caClient, core *api.Core, authzURL, base string, chal acme.Challenge, domains []string) error {
	names, accountURI, err := i.persistChallenge(ctx, ca, core, authzURL, chal.URL)
	if err != nil {
		return err
	}
	if accountURI == "" {
		if accountURI, err = i.accountURL(ctx, ca); err != nil {
			return err
		}
	}
	n, err := i.store.ChallengeNameByBase(ctx, persistKey(base))
	if err != nil {
		return fmt.Errorf("no dns-persist-01 subdomain assigned to %s: %w", base, err)
	}
	current, err := i.store.Values(ctx, n.Subdomain)
	if err != nil {
		return err
	}
	// Keep the issuer name already published when the CA still accepts
	// it: the record then stays byte for byte what it was.
	issuerName := names[0]
	if len(current) > 0 {
		if had, _, _ := persistParts(current[0]); slices.Contains(names, had) {
			issuerName = had
		}
	}
	wildcard, err := i.persistWildcard(ctx, base, domains)
	if err != nil {
		return err
	}
	value := PersistValue(issuerName, accountURI, wildcard)
	if len(current) == 1 && current[0] == value {
		return nil
	}
	if err := i.store.SetPersistentValue(ctx, n.Subdomain, value); err != nil {
		return err
	}
	i.log.Info("dns-persist-01 record published", "base_name", base, "subdomain", n.Subdomain, "value", value)
	return nil
}

// persistChallenge reads the dns-persist-01 fields of the challenge at
// chalURL from its authorization: the issuer domain names the CA accepts
// and the account URI it expects.
func (i *Issuer) persistChallenge(ctx context.Context, ca *caClient, core *api.Core, authzURL, chalURL string) ([]string, string, error) {
	take := ca.tap.watch(authzURL)
	err := i.retryCA(ctx, "authorization", func() error {
		_, err := core.Authorizations.Get(authzURL)
		return err
	})
	body := take()
	if err != nil {
		return nil, "", err
	}
	var authz struct {
		Challenges []struct {
			URL               string   `json:"url"`
			AccountURI        string   `json:"accounturi"`
			IssuerDomainNames []string `json:"issuer-domain-names"`
		} `json:"challenges"`
	}
	if err := json.Unmarshal(body, &authz); err != nil {
		return nil, "", fmt.Errorf("read the dns-persist-01 challenge: %w", err)
	}
	for _, c := range authz.Challenges {
		if c.URL != chalURL {
			continue
		}
		if len(c.IssuerDomainNames) == 0 {
			return nil, "", errors.New("the CA's dns-persist-01 challenge names no issuer-domain-names")
		}
		return c.IssuerDomainNames, c.AccountURI, nil
	}
	return nil, "", fmt.Errorf("the dns-persist-01 challenge %s is not in its authorization", chalURL)
}

// persistWildcard reports whether base's record must allow wildcards: some
// certificate validated through it covers *.base.
func (i *Issuer) persistWildcard(ctx context.Context, base string, domains []string) (bool, error) {
	if slices.Contains(domains, "*."+base) {
		return true, nil
	}
	certs, err := i.store.CertificateSummaries(ctx, store.CertificateFilter{Domain: base})
	if err != nil {
		return false, err
	}
	for _, c := range certs {
		if methodOf(c) == ChallengeDNSPersist01 && slices.Contains(c.Domains, "*."+base) {
			return true, nil
		}
	}
	return false, nil
}

// syncPersist brings the persist records of domains' base names in line
// with the certificates stored now: a record no dns-persist-01 certificate
// uses any more is removed (its subdomain released), and one that allows
// wildcards no remaining certificate needs loses policy=wildcard. It runs
// after a certificate is deleted or moves to another method or domains.
func (i *Issuer) syncPersist(ctx context.Context, domains []string) error {
	// Summaries (no key material) carry the method; every certificate a
	// record serves has a domain at or under its base name.
	var certs []store.Certificate
	for _, base := range baseNames(domains) {
		cs, err := i.store.CertificateSummaries(ctx, store.CertificateFilter{Domain: base})
		if err != nil {
			return err
		}
		certs = append(certs, cs...)
	}
	for _, base := range baseNames(domains) {
		used, wildcard := false, false
		for _, c := range certs {
			if methodOf(c) != ChallengeDNSPersist01 {
				continue
			}
			for _, cd := range c.Domains {
				if providers.BaseName(cd) == base {
					used = true
					wildcard = wildcard || cd == "*."+base
				}
			}
		}
		n, err := i.store.ChallengeNameByBase(ctx, persistKey(base))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if !used {
			if err := i.store.DeleteChallengeName(ctx, persistKey(base)); err != nil {
				return err
			}
			if err := i.store.DeleteAccount(ctx, n.Username); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			i.log.Info("dns-persist-01 record removed", "base_name", base, "subdomain", n.Subdomain)
			continue
		}
		current, err := i.store.Values(ctx, n.Subdomain)
		if err != nil || len(current) == 0 {
			continue
		}
		issuerName, accountURI, had := persistParts(current[0])
		if had && !wildcard {
			value := PersistValue(issuerName, accountURI, false)
			if err := i.store.SetPersistentValue(ctx, n.Subdomain, value); err != nil {
				return err
			}
			i.log.Info("dns-persist-01 record narrowed", "base_name", base, "value", value)
		}
	}
	return nil
}
