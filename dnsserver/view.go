package dnsserver

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delegated/delegated/store"
)

// The view is sharded copy-on-write: a reader loads one shard's maps with an
// atomic load and never takes a lock; a writer clones only its shard, so a
// change costs O(accounts/numShards) however large the zone, and queries
// never wait on a writer.
const numShards = 1024

// subdomainEntry is one subdomain's live values. It is a value in the
// shard's map (no pointer, no separate allocation) and immutable once
// published.
type subdomainEntry struct {
	// txt holds the values, oldest first, each as a 2-byte big-endian
	// length and its bytes: one allocation per subdomain whatever the
	// number of values, and close to the wire form the fast path copies.
	txt     string
	version int64
}

func newEntry(values []string, version int64) subdomainEntry {
	n := 0
	for _, v := range values {
		n += 2 + min(len(v), 0xFFFF)
	}
	// A Builder grown once makes the string in one allocation.
	var b strings.Builder
	b.Grow(n)
	for _, v := range values {
		v = v[:min(len(v), 0xFFFF)]
		b.WriteByte(byte(len(v) >> 8))
		b.WriteByte(byte(len(v)))
		b.WriteString(v)
	}
	return subdomainEntry{txt: b.String(), version: version}
}

// hasValues reports whether the subdomain has at least one value.
func (e subdomainEntry) hasValues() bool { return len(e.txt) > 0 }

// each calls fn with every value, oldest first.
func (e subdomainEntry) each(fn func(v string)) {
	for off := 0; off+2 <= len(e.txt); {
		l := int(e.txt[off])<<8 | int(e.txt[off+1])
		fn(e.txt[off+2 : off+2+l])
		off += 2 + l
	}
}

// values returns the values as a slice (full message path, tests).
func (e subdomainEntry) values() []string {
	var out []string
	e.each(func(v string) { out = append(out, v) })
	return out
}

// uuidKey is a subdomain label in canonical UUID form (what /register hands
// out: 36 characters, lower-case hex, dashes at 8, 13, 18 and 23) packed
// into 16 bytes. Keeping those inline in the map, rather than as strings,
// saves an allocation and ~60 bytes per name: most of a million-name zone.
type uuidKey [16]byte

func parseUUIDLabel[T string | []byte](s T) (k uuidKey, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return k, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i--
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return k, false
		}
		k[j] = hi<<4 | lo
		j++
	}
	return k, true
}

// fromHex accepts lower-case hex only: an upper-case UUID label is not
// canonical and is kept as a string, so it round-trips exactly.
func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// shardMaps is one shard's content; immutable once published.
type shardMaps struct {
	uuids map[uuidKey]subdomainEntry
	names map[string]subdomainEntry // labels that are not canonical UUIDs
}

func (m *shardMaps) get(label string) (subdomainEntry, bool) {
	if k, ok := parseUUIDLabel(label); ok {
		e, ok := m.uuids[k]
		return e, ok
	}
	e, ok := m.names[label]
	return e, ok
}

type viewShard struct {
	mu sync.Mutex // serialises writers of this shard only
	m  atomic.Pointer[shardMaps]
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
	for i := range v.shards {
		v.shards[i].m.Store(&shardMaps{})
	}
	v.serial.Store(uint32(now.Unix()))
	return v
}

func (v *View) shard(label string) *viewShard {
	return &v.shards[maphash.String(v.seed, label)%numShards]
}

// lookup returns the entry of a lower-case subdomain label.
func (v *View) lookup(label string) (subdomainEntry, bool) {
	return v.shard(label).m.Load().get(label)
}

// lookupBytes is lookup for a label in a byte slice, without allocating.
func (v *View) lookupBytes(label []byte) (subdomainEntry, bool) {
	m := v.shards[maphash.Bytes(v.seed, label)%numShards].m.Load()
	if k, ok := parseUUIDLabel(label); ok {
		e, ok := m.uuids[k]
		return e, ok
	}
	e, ok := m.names[string(label)]
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
	old := sh.m.Load()
	prev, existed := old.get(label)
	if existed && st.Version != 0 && prev.version > st.Version {
		sh.mu.Unlock()
		return
	}
	next := &shardMaps{uuids: maps.Clone(old.uuids), names: maps.Clone(old.names)}
	k, isUUID := parseUUIDLabel(label)
	switch {
	case st.Deleted && isUUID:
		delete(next.uuids, k)
	case st.Deleted:
		delete(next.names, label)
	case isUUID:
		if next.uuids == nil {
			next.uuids = map[uuidKey]subdomainEntry{}
		}
		next.uuids[k] = newEntry(st.Values, st.Version)
	default:
		if next.names == nil {
			next.names = map[string]subdomainEntry{}
		}
		next.names[label] = newEntry(st.Values, st.Version)
	}
	switch {
	case st.Deleted && existed:
		v.size.Add(-1)
	case !st.Deleted && !existed:
		v.size.Add(1)
	}
	sh.m.Store(next)
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
	q := newLoadQueue(v.Apply)
	stop = src.Subscribe(q.push)
	// The store may say how many accounts to expect (optional: a Source
	// need not count).
	hint := 0
	if c, ok := src.(interface {
		CountAccounts(ctx context.Context) (int, error)
	}); ok {
		if n, err := c.CountAccounts(ctx); err == nil {
			hint = n
		}
	}
	err = v.bulkLoad(hint, func(yield func(store.SubdomainState) error) error {
		return src.Load(ctx, yield)
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("dnsserver: load zone view: %w", err)
	}
	// The load leaves behind as much garbage as the view is large (rows,
	// value slices); collect it and hand the pages back now, or a
	// million-name zone keeps twice its size resident until the
	// scavenger gets there.
	debug.FreeOSMemory()
	q.release()
	return v, stop, nil
}

// loadQueue holds the changes a subscription delivers while the initial
// load runs, and applies them after it, in order; from then on it applies
// each as it comes.
type loadQueue[T any] struct {
	apply   func(T)
	mu      sync.Mutex
	loaded  bool
	pending []T
}

func newLoadQueue[T any](apply func(T)) *loadQueue[T] { return &loadQueue[T]{apply: apply} }

func (q *loadQueue[T]) push(st T) {
	q.mu.Lock()
	if !q.loaded {
		q.pending = append(q.pending, st)
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	q.apply(st)
}

// release applies what was queued and ends the queueing.
func (q *loadQueue[T]) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, st := range q.pending {
		q.apply(st)
	}
	q.pending, q.loaded = nil, true
}

// bulkLoad fills an empty view without the per-write copy, for start-up.
// sizeHint (0 if unknown) presizes the maps, which saves their growth
// copies and keeps them tightly packed.
func (v *View) bulkLoad(sizeHint int, states func(yield func(store.SubdomainState) error) error) error {
	shards := make([]shardMaps, numShards)
	for i := range shards {
		shards[i].uuids = make(map[uuidKey]subdomainEntry, sizeHint/numShards+sizeHint/numShards/8)
	}
	var n int64
	err := states(func(st store.SubdomainState) error {
		if st.Deleted {
			return nil
		}
		label := strings.ToLower(st.Subdomain)
		sh := &shards[maphash.String(v.seed, label)%numShards]
		e := newEntry(st.Values, st.Version)
		if k, ok := parseUUIDLabel(label); ok {
			if _, dup := sh.uuids[k]; !dup {
				n++
			}
			sh.uuids[k] = e
			return nil
		}
		if sh.names == nil {
			sh.names = map[string]subdomainEntry{}
		}
		if _, dup := sh.names[label]; !dup {
			n++
		}
		sh.names[label] = e
		return nil
	})
	if err != nil {
		return err
	}
	for i := range shards {
		v.shards[i].m.Store(&shards[i])
	}
	v.size.Store(n)
	v.serial.Add(1)
	return nil
}
