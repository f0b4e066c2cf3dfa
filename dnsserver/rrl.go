package dnsserver

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Response rate limiting, as NSD and Knot do it: UDP replies to one source
// prefix (/24 IPv4, /56 IPv6: what one site or one spoofed victim looks
// like) are limited to rate per second. Past the limit every slip-th reply
// goes out truncated (TC=1, question only) so a genuine resolver retries over
// TCP, which cannot be spoofed; the others are dropped, which takes the
// amplification out of a reflection attack. TCP is never limited.

// rrlSlots bounds the table: prefixes hash into a fixed array, and a prefix
// that lands on a slot held by another takes it over (as Knot's table
// does), so memory stays constant however many sources there are.
const rrlSlots = 1 << 14

type rrlAction int

const (
	rrlSend rrlAction = iota
	rrlDrop
	rrlSlip
)

type rrlSlot struct {
	mu      sync.Mutex
	key     uint64
	second  int64
	count   int
	limited uint64
}

type rrl struct {
	rate  int
	slip  int
	now   func() time.Time
	seed  maphash.Seed
	slots []rrlSlot
}

func newRRL(rate, slip int, now func() time.Time) *rrl {
	return &rrl{rate: rate, slip: slip, now: now, seed: maphash.MakeSeed(), slots: make([]rrlSlot, rrlSlots)}
}

// prefixKey identifies src's /24 (IPv4, also IPv4-mapped IPv6) or /56.
func prefixKey(src netip.Addr) uint64 {
	src = src.Unmap()
	if src.Is4() {
		a := src.As4()
		return 1<<56 | uint64(a[0])<<16 | uint64(a[1])<<8 | uint64(a[2])
	}
	a := src.As16()
	var k uint64
	for _, b := range a[:7] {
		k = k<<8 | uint64(b)
	}
	return 2<<56 ^ k
}

// decide accounts one reply to src and says whether to send it.
func (r *rrl) decide(src netip.Addr) rrlAction {
	key := prefixKey(src)
	sl := &r.slots[maphash.Comparable(r.seed, key)%rrlSlots]
	now := r.now().Unix()
	sl.mu.Lock()
	if sl.key != key {
		sl.key, sl.second, sl.count, sl.limited = key, now, 0, 0
	}
	if sl.second != now {
		sl.second, sl.count = now, 0
	}
	sl.count++
	if sl.count <= r.rate {
		sl.mu.Unlock()
		return rrlSend
	}
	sl.limited++
	limited := sl.limited
	sl.mu.Unlock()
	if r.slip > 0 && limited%uint64(r.slip) == 0 {
		return rrlSlip
	}
	return rrlDrop
}
