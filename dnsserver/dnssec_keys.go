package dnsserver

import (
	"context"
	"time"

	"github.com/delegated/delegated/store"
)

// KeySource is what the server reads its shared secrets from: the DNSSEC
// keys (a rollover is a change of their states) and the DNS cookie secrets,
// which the store rotates.
type KeySource interface {
	DNSSECKeys(ctx context.Context) ([]store.DNSSECKey, error)
	CookieSecrets(ctx context.Context, rotateAfter time.Duration) ([][]byte, error)
}

// CookieRotation is how long one cookie secret makes new cookies; cookies
// made with the two before it are still accepted.
const CookieRotation = 24 * time.Hour

// FollowKeys reads src once, then every interval until ctx ends, and
// installs what it read: every instance on one database converges on the
// same keys and cookie secrets within one interval. A failed read keeps
// what is installed (answers go on) and is logged; so is a key set that
// does not validate.
func (s *Server) FollowKeys(ctx context.Context, src KeySource, interval time.Duration) error {
	if err := s.refreshKeys(ctx, src); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		failing := false // log a failure once, and the recovery
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				err := s.refreshKeys(ctx, src)
				switch {
				case err != nil && ctx.Err() == nil && !failing:
					s.log.Warn("dns keys not refreshed; serving with the ones held", "err", err)
					failing = true
				case err == nil && failing:
					s.log.Info("dns keys refreshed again")
					failing = false
				}
			}
		}
	}()
	return nil
}

func (s *Server) refreshKeys(ctx context.Context, src KeySource) error {
	secrets, err := src.CookieSecrets(ctx, CookieRotation)
	if err != nil {
		return err
	}
	if err := s.SetCookieSecrets(secrets); err != nil {
		return err
	}
	if s.signer == nil {
		return nil
	}
	keys, err := src.DNSSECKeys(ctx)
	if err != nil {
		return err
	}
	old := s.signer.keys.Load()
	if sameKeys(old, keys) {
		return nil
	}
	if err := s.signer.setKeys(keys); err != nil {
		return err
	}
	s.log.Info("dnssec keys installed", "keys", keys)
	return nil
}

// sameKeys reports whether ks already holds keys (same tags, same roles),
// so an unchanged poll does not start a new signature generation.
func sameKeys(ks *keySet, keys []store.DNSSECKey) bool {
	if ks == nil || len(ks.keys) != len(keys) || len(ks.cds) != countNotRetired(keys) {
		return false
	}
	for i, k := range keys {
		priv, err := parseKey(k)
		if err != nil {
			return false
		}
		dk := dnskeyOf("", 0, &priv.PublicKey)
		if ks.keys[i].tag != dk.KeyTag() || ks.keys[i].signs != (k.State == store.KeyActive) {
			return false
		}
	}
	return true
}

func countNotRetired(keys []store.DNSSECKey) int {
	n := 0
	for _, k := range keys {
		if k.State != store.KeyRetired {
			n++
		}
	}
	return n
}
