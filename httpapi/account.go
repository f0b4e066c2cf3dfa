package httpapi

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/store"
)

// NewAccount makes an account the way /register does (fresh UUIDs, a
// 40-character key, its bcrypt hash at cost) for operators' tools such as
// `delegated account add`. allowFrom follows /register's rules. The returned
// Credentials hold the only copy of the key.
func NewAccount(zone string, allowFrom []string, cost int) (store.Account, Credentials, error) {
	acct, creds, err := newAccount(zone, allowFrom, func(key string) (string, error) {
		h, err := bcrypt.GenerateFromPassword([]byte(key), cost)
		return string(h), err
	})
	if err != nil {
		return store.Account{}, Credentials{}, fmt.Errorf("httpapi: new account: %w", err)
	}
	return acct, creds, nil
}

// errInvalidAllowFrom: an allowfrom entry is not a CIDR.
var errInvalidAllowFrom = errors.New("invalid allowfrom CIDR")

// newAccount is the one recipe for a new account, used by /register and
// NewAccount: fresh UUIDs for username and subdomain, a 40-character key
// hashed by hash, allowFrom checked with parseAllowFrom.
func newAccount(zone string, allowFrom []string, hash func(key string) (string, error)) (store.Account, Credentials, error) {
	shown, prefixes, ok := parseAllowFrom(allowFrom)
	if !ok {
		return store.Account{}, Credentials{}, fmt.Errorf("%w in %q", errInvalidAllowFrom, allowFrom)
	}
	key, err := newKey()
	if err != nil {
		return store.Account{}, Credentials{}, err
	}
	h, err := hash(key)
	if err != nil {
		return store.Account{}, Credentials{}, fmt.Errorf("hash key: %w", err)
	}
	acct := store.Account{
		Username:  uuid.NewString(),
		KeyHash:   h,
		Subdomain: uuid.NewString(),
		AllowFrom: prefixes,
	}
	return acct, Credentials{
		Username:   acct.Username,
		Password:   key,
		Fulldomain: acct.Subdomain + "." + strings.TrimSuffix(strings.ToLower(zone), "."),
		Subdomain:  acct.Subdomain,
		AllowFrom:  shown,
	}, nil
}

// ParseAllowFrom reads allowfrom entries with /register's rules (brackets
// around IPv6 dropped, host bits allowed); any invalid entry is an error.
func ParseAllowFrom(in []string) ([]netip.Prefix, error) {
	_, prefixes, ok := parseAllowFrom(in)
	if !ok {
		return nil, fmt.Errorf("httpapi: invalid allowfrom CIDR in %q", in)
	}
	return prefixes, nil
}
