package httpapi

import (
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
	shown, prefixes, ok := parseAllowFrom(allowFrom)
	if !ok {
		return store.Account{}, Credentials{}, fmt.Errorf("httpapi: new account: invalid allowfrom CIDR in %q", allowFrom)
	}
	key, err := newKey()
	if err != nil {
		return store.Account{}, Credentials{}, fmt.Errorf("httpapi: new account: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(key), cost)
	if err != nil {
		return store.Account{}, Credentials{}, fmt.Errorf("httpapi: new account: hash key: %w", err)
	}
	acct := store.Account{
		Username:  uuid.NewString(),
		KeyHash:   string(hash),
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
