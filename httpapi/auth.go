package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/store"
)

// errForbidden covers every authentication and authorisation failure; they
// all get the same 401 so that none tells an attacker which part was wrong.
var errForbidden = errors.New("forbidden")

// authenticator checks X-Api-User/X-Api-Key pairs. bcrypt runs on the
// workers of a low-priority pool (see lowPriorityPool for its rescue); a
// verified pair is remembered (as a SHA-256 of the key, never the key) so a
// client updating again does not pay bcrypt again.
type authenticator struct {
	store     Store
	cost      int
	bcrypt    *lowPriorityPool
	dummyHash []byte

	mu          sync.Mutex
	maxEntries  int
	byUser      map[string]cachedCredential
	bySubdomain map[string]string
}

type cachedCredential struct {
	keyDigest [sha256.Size]byte
	account   store.Account
}

func newAuthenticator(st Store, cost, concurrency, cacheSize int) (*authenticator, error) {
	// Unknown users are checked against this hash so they cost the same
	// time as a wrong key for a real user.
	var random [30]byte
	if _, err := rand.Read(random[:]); err != nil {
		return nil, fmt.Errorf("httpapi: random: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword(random[:], cost)
	if err != nil {
		return nil, fmt.Errorf("httpapi: dummy hash: %w", err)
	}
	return &authenticator{
		store:       st,
		cost:        cost,
		bcrypt:      newLowPriorityPool(concurrency),
		dummyHash:   dummy,
		maxEntries:  cacheSize,
		byUser:      map[string]cachedCredential{},
		bySubdomain: map[string]string{},
	}, nil
}

// hash bcrypts a new key on a pool worker.
func (a *authenticator) hash(ctx context.Context, key string) (string, error) {
	type hashed struct {
		h   []byte
		err error
	}
	r, err := runPool(ctx, a.bcrypt, func() hashed {
		h, err := bcrypt.GenerateFromPassword([]byte(key), a.cost)
		return hashed{h, err}
	})
	if err != nil {
		return "", err
	}
	return string(r.h), r.err
}

// errThrottled: the credential is not cached and the caller may not spend
// bcrypt on it (its source failed too often).
var errThrottled = errors.New("too many failed authentications")

// verify returns the account whose credentials these are, or errForbidden.
// A credential verified before is answered from the cache; any other needs
// bcrypt, which mayCompute allows (errThrottled when it does not). Other
// errors mean the store failed.
func (a *authenticator) verify(ctx context.Context, username, key string, mayCompute bool) (store.Account, error) {
	digest := sha256.Sum256([]byte(key))
	a.mu.Lock()
	cached, ok := a.byUser[username]
	a.mu.Unlock()
	if ok && subtle.ConstantTimeCompare(cached.keyDigest[:], digest[:]) == 1 {
		return cached.account, nil
	}
	if !mayCompute {
		return store.Account{}, errThrottled
	}

	acct, err := a.store.AccountByUsername(ctx, username)
	hash := []byte(acct.KeyHash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		hash = a.dummyHash
	case err != nil:
		return store.Account{}, err
	}
	match, poolErr := runPool(ctx, a.bcrypt, func() bool {
		return bcrypt.CompareHashAndPassword(hash, []byte(key)) == nil
	})
	if poolErr != nil {
		return store.Account{}, poolErr
	}
	if err != nil || !match {
		return store.Account{}, errForbidden
	}
	a.remember(username, digest, acct)
	return acct, nil
}

func (a *authenticator) remember(username string, digest [sha256.Size]byte, acct store.Account) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.byUser) >= a.maxEntries {
		// Evict an arbitrary entry (map order is random): simple, and a
		// miss only costs one bcrypt.
		for u, c := range a.byUser {
			delete(a.byUser, u)
			delete(a.bySubdomain, c.account.Subdomain)
			break
		}
	}
	a.byUser[username] = cachedCredential{keyDigest: digest, account: acct}
	a.bySubdomain[acct.Subdomain] = username
}

// forget drops cached credentials of an account that was deleted; it is a
// store subscriber.
func (a *authenticator) forget(st store.SubdomainState) {
	if !st.Deleted {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, ok := a.bySubdomain[st.Subdomain]; ok {
		delete(a.byUser, u)
		delete(a.bySubdomain, st.Subdomain)
	}
}

// canonicalUUID accepts every form uuid.Parse does (hyphenated, braced,
// urn:uuid:, bare hex) and returns the canonical lower-case form.
func canonicalUUID(s string) (string, bool) {
	u, err := uuid.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// validKey: exactly 40 characters of [A-Za-z0-9_-], what /register issues.
func validKey(k string) bool {
	return len(k) == 40 && isBase64URL(k)
}

// validTXT: a DNS-01 value is base64url(SHA-256), 43 characters unpadded.
func validTXT(t string) bool {
	return len(t) == 43 && isBase64URL(t)
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// allowed reports whether addr may act for an account limited to prefixes:
// an account without allowfrom may act from anywhere.
func allowed(prefixes []netip.Prefix, addr netip.Addr) bool {
	return len(prefixes) == 0 || inPrefixes(prefixes, addr)
}
