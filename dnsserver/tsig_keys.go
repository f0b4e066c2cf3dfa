package dnsserver

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/delegated/delegated/store"
)

// TSIGKeys is the in-memory set of TSIG keys, fed by the store like the View:
// verifying an UPDATE never reads the database. Readers load an immutable
// map with one atomic load; writers (key changes, rare) copy it.
type TSIGKeys struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[keyMaps]
}

type keyMaps struct {
	byName map[string]*store.TSIGKey // lower-case key name
	bySub  map[string]keyEntry       // subdomain
}

type keyEntry struct {
	name    string // "" when the subdomain's key was removed
	version int64
}

// NewTSIGKeys returns an empty key set.
func NewTSIGKeys() *TSIGKeys {
	k := &TSIGKeys{}
	k.m.Store(&keyMaps{byName: map[string]*store.TSIGKey{}, bySub: map[string]keyEntry{}})
	return k
}

// byName returns the key named name (any case), or nil.
func (k *TSIGKeys) byName(name string) *store.TSIGKey {
	return k.m.Load().byName[strings.ToLower(name)]
}

// Len is the number of keys held.
func (k *TSIGKeys) Len() int { return len(k.m.Load().byName) }

// Apply makes the set reflect st; a state older than the one held for its
// subdomain is ignored.
func (k *TSIGKeys) Apply(st store.TSIGKeyState) {
	sub := strings.ToLower(st.Subdomain)
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.m.Load()
	prev, had := old.bySub[sub]
	if had && st.Version != 0 && prev.version > st.Version {
		return
	}
	if had && prev.name != "" && st.Key != nil && prev.name == st.Key.Name {
		if cur := old.byName[prev.name]; cur != nil && sameKey(cur, st.Key) {
			return // a followed change that did not touch the key
		}
	}
	next := &keyMaps{byName: maps.Clone(old.byName), bySub: maps.Clone(old.bySub)}
	if had && prev.name != "" {
		delete(next.byName, prev.name)
	}
	e := keyEntry{version: st.Version}
	if st.Key != nil {
		key := *st.Key
		key.Name = strings.ToLower(key.Name)
		key.Subdomain = sub
		e.name = key.Name
		// A name moving from another subdomain (replaced there first, in
		// another order than ours) leaves that subdomain keyless here.
		if other := next.byName[key.Name]; other != nil && other.Subdomain != sub {
			next.bySub[other.Subdomain] = keyEntry{version: next.bySub[other.Subdomain].version}
		}
		next.byName[key.Name] = &key
	}
	next.bySub[sub] = e
	k.m.Store(next)
}

func sameKey(a, b *store.TSIGKey) bool {
	return a.Algorithm == b.Algorithm && a.FreeTXT == b.FreeTXT && string(a.Secret) == string(b.Secret) &&
		strings.EqualFold(a.Subdomain, b.Subdomain)
}

// TSIGKeySource is what the key set needs from the store.
type TSIGKeySource interface {
	LoadTSIGKeys(ctx context.Context, fn func(store.TSIGKey) error) error
	SubscribeTSIGKeys(fn func(store.TSIGKeyState)) (cancel func())
	Subscribe(fn func(store.SubdomainState)) (cancel func())
}

// FollowTSIGKeys loads every key from src and keeps applying src's key changes
// (and account deletions) until stop is called. Changes committed during
// the load are queued and applied after it.
func FollowTSIGKeys(ctx context.Context, src TSIGKeySource) (k *TSIGKeys, stop func(), err error) {
	k = NewTSIGKeys()
	q := newLoadQueue(k.Apply)
	stopKeys := src.SubscribeTSIGKeys(q.push)
	stopSubs := src.Subscribe(func(st store.SubdomainState) {
		if st.Deleted {
			q.push(store.TSIGKeyState{Subdomain: st.Subdomain, Version: st.Version})
		}
	})
	stop = func() { stopKeys(); stopSubs() }
	err = src.LoadTSIGKeys(ctx, func(key store.TSIGKey) error {
		k.Apply(store.TSIGKeyState{Subdomain: key.Subdomain, Key: &key})
		return nil
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("dnsserver: load TSIG keys: %w", err)
	}
	q.release()
	return k, stop, nil
}
