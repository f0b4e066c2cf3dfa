package dnsserver

import (
	"context"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delegated/delegated/store"
)

// The view is sharded copy-on-write: a reader loads one shard's map with an
// atomic load and never takes a lock; a writer clones only its shard, so a
// change costs O(accounts/numShards) however large the zone, and queries
// never wait on a writer.
const numShards = 1024

// subdomainEntry is immutable once published.
type subdomainEntry struct {
	values  []string
	version int64
}

type viewShard struct {
	mu sync.Mutex // serialises writers of this shard only
	m  atomic.Pointer[map[string]*subdomainEntry]
}

// View is the in-memory state of the dynamic part of the zone: which
// subdomains exist and their live TXT values. It is fed by the store's
// subscription and read by every query.
type View struct {
	seed   maphash.Seed
	shards [numShards]viewShard
	serial atomic.Uint32
	size   atomic.Int64
}

// NewView returns an empty view whose SOA serial starts at the current Unix
// time, so a restarted server never goes back to an older serial.
func NewView(now time.Time) *View {
	v := &View{seed: maphash.MakeSeed()}
	empty := map[string]*subdomainEntry{}
	for i := range v.shards {
		m := empty
		if i > 0 {
			m = map[string]*subdomainEntry{}
		}
		v.shards[i].m.Store(&m)
	}
	v.serial.Store(uint32(now.Unix()))
	return v
}

func (v *View) shard(label string) *viewShard {
	return &v.shards[maphash.String(v.seed, label)%numShards]
}

// lookup returns the entry of a lower-case subdomain label.
func (v *View) lookup(label string) (*subdomainEntry, bool) {
	e, ok := (*v.shard(label).m.Load())[label]
	return e, ok
}

// Serial is the zone's SOA serial; it changes whenever the zone's data does.
func (v *View) Serial() uint32 { return v.serial.Load() }

// Len is the number of subdomains the view holds.
func (v *View) Len() int { return int(v.size.Load()) }

// Apply makes the view reflect st. It is the store's subscriber and runs
// before the store's write call returns.
func (v *View) Apply(st store.SubdomainState) {
	label := strings.ToLower(st.Subdomain)
	sh := v.shard(label)
	sh.mu.Lock()
	old := *sh.m.Load()
	if prev, ok := old[label]; ok && st.Version != 0 && prev.version > st.Version {
		sh.mu.Unlock()
		return
	}
	next := make(map[string]*subdomainEntry, len(old)+1)
	for k, e := range old {
		next[k] = e
	}
	_, existed := old[label]
	if st.Deleted {
		delete(next, label)
		if existed {
			v.size.Add(-1)
		}
	} else {
		next[label] = &subdomainEntry{values: append([]string(nil), st.Values...), version: st.Version}
		if !existed {
			v.size.Add(1)
		}
	}
	sh.m.Store(&next)
	sh.mu.Unlock()
	v.serial.Add(1)
}

// Source is what the view needs from the store: one pass over every
// subdomain at start, then every committed change.
type Source interface {
	Load(ctx context.Context, fn func(store.SubdomainState) error) error
	Subscribe(fn func(store.SubdomainState)) (cancel func())
}

// Follow builds a view from src and keeps it applying src's changes until
// the returned stop func is called. Changes committed while the initial load
// runs are queued and applied after it, so none is lost.
func Follow(ctx context.Context, src Source, now time.Time) (v *View, stop func(), err error) {
	v = NewView(now)
	var (
		mu      sync.Mutex
		loading = true
		pending []store.SubdomainState
	)
	stop = src.Subscribe(func(st store.SubdomainState) {
		mu.Lock()
		if loading {
			pending = append(pending, st)
			mu.Unlock()
			return
		}
		mu.Unlock()
		v.Apply(st)
	})
	err = v.bulkLoad(func(yield func(store.SubdomainState) error) error {
		return src.Load(ctx, yield)
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("dnsserver: load zone view: %w", err)
	}
	mu.Lock()
	for _, st := range pending {
		v.Apply(st)
	}
	loading = false
	mu.Unlock()
	return v, stop, nil
}

// bulkLoad fills an empty view without the per-write copy, for start-up.
func (v *View) bulkLoad(states func(yield func(store.SubdomainState) error) error) error {
	maps := make([]map[string]*subdomainEntry, numShards)
	for i := range maps {
		maps[i] = map[string]*subdomainEntry{}
	}
	var n int64
	err := states(func(st store.SubdomainState) error {
		if st.Deleted {
			return nil
		}
		label := strings.ToLower(st.Subdomain)
		i := maphash.String(v.seed, label) % numShards
		if _, dup := maps[i][label]; !dup {
			n++
		}
		maps[i][label] = &subdomainEntry{values: st.Values, version: st.Version}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range maps {
		m := maps[i]
		v.shards[i].m.Store(&m)
	}
	v.size.Store(n)
	v.serial.Add(1)
	return nil
}
