// Package storetest reads a store.Store the way tests of other packages
// need to: one subdomain's live values. The product never asks for them (the
// DNS view follows the store by subscription), so the Store has no such
// method; this reads them through Load, which is fine at a test's size.
package storetest

import (
	"context"
	"errors"
	"fmt"

	"github.com/delegated/delegated/store"
)

var errFound = errors.New("found")

// Values returns subdomain's live values, oldest first, or an error
// wrapping store.ErrNotFound when no account owns subdomain.
func Values(ctx context.Context, st *store.Store, subdomain string) ([]string, error) {
	var values []string
	err := st.Load(ctx, func(s store.SubdomainState) error {
		if s.Subdomain != subdomain {
			return nil
		}
		values = s.Values
		return errFound
	})
	switch {
	case errors.Is(err, errFound):
		return values, nil
	case err != nil:
		return nil, err
	}
	return nil, fmt.Errorf("storetest: values of %s: %w", subdomain, store.ErrNotFound)
}
