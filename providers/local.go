package providers

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-acme/lego/v4/challenge/dns01"

	"github.com/delegated/delegated/store"
)

// LocalStore is what Local needs from the store.
type LocalStore interface {
	ChallengeNameByBase(ctx context.Context, baseName string) (store.ChallengeName, error)
	// AddValueEverywhere returns once every instance serving the zone
	// answers the value: the CA is asked to look right after Present.
	AddValueEverywhere(ctx context.Context, subdomain, txt string) error
	RemoveValue(ctx context.Context, subdomain, txt string) error
}

// Local is the in-process solver: PresentContext stores the value on the
// challenge subdomain assigned to the domain's base name. The store pushes
// the change to the DNS view before AddValue returns, so the value is served
// when PresentContext returns and no propagation wait is needed.
type Local struct {
	store LocalStore
}

// NewLocal returns a solver on st.
func NewLocal(st LocalStore) *Local {
	return &Local{store: st}
}

// BaseName strips a wildcard prefix and the trailing dot and lower-cases:
// example.com and *.example.com validate through the same
// _acme-challenge.example.com name.
func BaseName(domain string) string {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	return strings.TrimPrefix(d, "*.")
}

// PresentContext stores the DNS-01 value for domain.
func (l *Local) PresentContext(ctx context.Context, domain, keyAuth string) error {
	sub, err := l.subdomain(ctx, domain)
	if err != nil {
		return err
	}
	value := dns01.GetChallengeInfo(domain, keyAuth).Value
	if err := l.store.AddValueEverywhere(ctx, sub, value); err != nil {
		return fmt.Errorf("local provider: present %s: %w", domain, err)
	}
	return nil
}

// CleanUpContext removes the value PresentContext stored.
func (l *Local) CleanUpContext(ctx context.Context, domain, keyAuth string) error {
	sub, err := l.subdomain(ctx, domain)
	if err != nil {
		return err
	}
	value := dns01.GetChallengeInfo(domain, keyAuth).Value
	if err := l.store.RemoveValue(ctx, sub, value); err != nil {
		return fmt.Errorf("local provider: clean up %s: %w", domain, err)
	}
	return nil
}

func (l *Local) subdomain(ctx context.Context, domain string) (string, error) {
	n, err := l.store.ChallengeNameByBase(ctx, BaseName(domain))
	if err != nil {
		return "", fmt.Errorf("local provider: no challenge subdomain assigned to %s: %w", domain, err)
	}
	return n.Subdomain, nil
}
