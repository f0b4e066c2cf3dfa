package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"strings"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"

	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// The validation methods a certificate may use. All three are answered by
// our zone through a CNAME from the customer's zone; they differ in the
// name the CA reads and in how long the value stays.
const (
	// ChallengeDNS01 (RFC 8555): a TXT at _acme-challenge.<domain>, one
	// name per domain, so one CNAME and one party.
	ChallengeDNS01 = "dns-01"
	// ChallengeDNSAccount01 (draft-ietf-acme-dns-account-label): a TXT at
	// _<label>._acme-challenge.<domain>, the label derived from the ACME
	// account URL, so every account (every CDN) has a name of its own.
	ChallengeDNSAccount01 = "dns-account-01"
	// ChallengeDNSPersist01 (draft-ietf-acme-dns-persist): a lasting TXT at
	// _validation-persist.<domain> naming the CA and the account; it is
	// written once and every later order validates against it.
	ChallengeDNSPersist01 = "dns-persist-01"
)

// Challenges lists the methods in the order the documentation gives them.
var challenges = []string{ChallengeDNS01, ChallengeDNSAccount01, ChallengeDNSPersist01}

// ParseChallenge returns the method named s ("" is dns-01), or an error
// listing the accepted names.
func ParseChallenge(s string) (string, error) {
	m := strings.ToLower(strings.TrimSpace(s))
	if m == "" {
		return ChallengeDNS01, nil
	}
	if slices.Contains(challenges, m) {
		return m, nil
	}
	return "", fmt.Errorf("unknown challenge %q; expected %s", s, strings.Join(challenges, ", "))
}

// methodOf is c's validation method; rows written before methods existed
// have none and used dns-01.
func methodOf(c store.Certificate) string {
	if c.Challenge == "" {
		return ChallengeDNS01
	}
	return c.Challenge
}

// AccountLabel is the dns-account-01 label of an ACME account (without the
// leading underscore): the first 10 bytes of SHA-256 of the account URL in
// lower-case base32, no padding (draft-ietf-acme-dns-account-label, section
// 3.1; Pebble's va.go computes the same).
func AccountLabel(accountURL string) string {
	sum := sha256.Sum256([]byte(accountURL))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
}

// AccountChallengeName is the name dns-account-01 reads for base (no
// trailing dot), with one.
func AccountChallengeName(accountURL, base string) string {
	return "_" + AccountLabel(accountURL) + "._acme-challenge." + base + "."
}

// requestOptions resolves a request's method and profile against the
// configured defaults and checks the profile with the CA the request is
// pinned to (else the first CA; a CA the order falls back to checks it
// again before ordering).
func (i *Issuer) requestOptions(ctx context.Context, req Request) (method, profile string, err error) {
	method = i.opts.Challenge
	if req.Challenge != "" {
		if method, err = ParseChallenge(req.Challenge); err != nil {
			return "", "", fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	profile = strings.TrimSpace(req.Profile)
	if profile == "" {
		profile = i.opts.Profile
	}
	if err := i.checkPin(req.CA); err != nil {
		return "", "", err
	}
	if err := i.checkProfile(ctx, i.recordsCA(req.CA), profile); err != nil {
		return "", "", err
	}
	return method, profile, nil
}

// assignFor returns the records to create for domains under method, for a
// certificate pinned to the CA pin ("" for none). dns-01 and dns-account-01
// share each base name's challenge subdomain (both read the same kind of
// value); dns-persist-01 has a subdomain of its own per base name, holding
// only the lasting record.
func (i *Issuer) assignFor(ctx context.Context, domains []string, method, pin string) ([]Delegation, error) {
	if method == ChallengeDNS01 {
		return i.assign(ctx, domains)
	}
	for _, d := range domains {
		if base := providers.BaseName(d); i.isSelf(base) {
			return nil, fmt.Errorf("%w: %s is this daemon's own zone, which validates with dns-01 only", ErrInvalid, base)
		}
	}
	if method == ChallengeDNSPersist01 {
		return i.assignPersist(ctx, domains)
	}
	acct, err := i.accountURL(ctx, i.recordsCA(pin))
	if err != nil {
		return nil, fmt.Errorf("dns-account-01: the record names derive from this daemon's ACME account: %w", err)
	}
	dels, err := i.assign(ctx, domains)
	if err != nil {
		return nil, err
	}
	for k := range dels {
		dels[k].Name = AccountChallengeName(acct, dels[k].BaseName)
	}
	return dels, nil
}

// accountURL is this daemon's ACME account URL at ca, registering the
// account on first use.
func (i *Issuer) accountURL(ctx context.Context, ca *caClient) (string, error) {
	if _, err := i.core(ctx, ca); err != nil {
		return "", err
	}
	ca.coreMu.Lock()
	defer ca.coreMu.Unlock()
	return ca.acmeAccount, nil
}

// recordsCA is the CA whose account dns-account-01 records name: the one
// a certificate is pinned to, else the first (most preferred) CA. An
// unpinned dns-account-01 certificate orders from it only, since no other
// CA's account matches the customer's records. A pin to an unknown CA
// (refused by checkPin) falls back to the first CA here.
func (i *Issuer) recordsCA(pin string) *caClient {
	if ca := i.caNamed(pin); ca != nil {
		return ca
	}
	return i.cas[0]
}

// solution is what was placed for one authorization and must be removed
// after the order; zero for dns-persist-01, whose record stays.
type solution struct {
	domain, keyAuth string
}

// present places the value of authz's challenge of method and returns that
// challenge, and what to clean up afterwards.
func (i *Issuer) present(ctx context.Context, ca *caClient, core *api.Core, authzURL string, authz acme.Authorization, domain, method string, domains []string) (acme.Challenge, *solution, error) {
	var offered []string
	var chal *acme.Challenge
	for k := range authz.Challenges {
		offered = append(offered, authz.Challenges[k].Type)
		if authz.Challenges[k].Type == method {
			chal = &authz.Challenges[k]
		}
	}
	if chal == nil {
		return acme.Challenge{}, nil, fmt.Errorf("the CA does not offer %s for %s (it offers %s); choose another method with --challenge or [issuer] challenge",
			method, domain, strings.Join(offered, ", "))
	}
	if method == ChallengeDNSPersist01 {
		return *chal, nil, i.presentPersist(ctx, ca, core, authzURL, authz.Identifier.Value, *chal, domains)
	}
	keyAuth, err := core.GetKeyAuthorization(chal.Token)
	if err != nil {
		return acme.Challenge{}, nil, err
	}
	// dns-account-01's value is dns-01's (base64url SHA-256 of the key
	// authorization); only the name the CA reads differs, and that name
	// is the customer's CNAME to the same subdomain.
	if err := i.solver.PresentContext(ctx, domain, keyAuth); err != nil {
		return acme.Challenge{}, nil, err
	}
	return *chal, &solution{domain: domain, keyAuth: keyAuth}, nil
}

// sameRequest reports whether c already is what a request for domains,
// method and profile asks for.
func sameRequest(c store.Certificate, domains []string, method, profile string) bool {
	return slices.Equal(c.Domains, domains) && methodOf(c) == method && c.Profile == profile
}

// orderSpec is what one ACME order is for.
type orderSpec struct {
	domains []string
	// method is the validation method; profile the ACME profile, "" for
	// the CA's default.
	method, profile string
}
