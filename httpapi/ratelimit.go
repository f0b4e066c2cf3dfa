package httpapi

import (
	"net/netip"
	"sync"
	"time"
)

// rateLimiter is a token bucket per source: `rate` events per `per`, with a
// burst of `rate`. IPv6 sources are grouped by /64, the smallest block a
// single customer gets, so one host cannot dodge the limit by rotating
// addresses inside its own prefix.
type rateLimiter struct {
	rate float64
	per  time.Duration
	now  func() time.Time

	mu         sync.Mutex
	buckets    map[netip.Prefix]bucket
	maxBuckets int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate int, per time.Duration, now func() time.Time) *rateLimiter {
	return &rateLimiter{
		rate:       float64(rate),
		per:        per,
		now:        now,
		buckets:    map[netip.Prefix]bucket{},
		maxBuckets: 100000,
	}
}

func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// exhausted reports whether addr's bucket is empty, without taking a
// token: the failed-authentication limit refuses a source before bcrypt
// only once its failures used the whole burst.
func (l *rateLimiter) exhausted(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[sourceKey(addr)]
	return ok && l.refill(b, l.now()) < 1
}

// allow takes one token from addr's bucket and reports whether there was one.
func (l *rateLimiter) allow(addr netip.Addr) bool {
	key := sourceKey(addr)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxBuckets {
			l.prune(now)
		}
		b = bucket{tokens: l.rate, last: now}
	}
	b.tokens = l.refill(b, now)
	b.last = now
	if b.tokens < 1 {
		l.buckets[key] = b
		return false
	}
	b.tokens--
	l.buckets[key] = b
	return true
}

func (l *rateLimiter) refill(b bucket, now time.Time) float64 {
	elapsed := now.Sub(b.last)
	if elapsed <= 0 {
		return b.tokens
	}
	return min(l.rate, b.tokens+l.rate*float64(elapsed)/float64(l.per))
}

// prune forgets sources whose bucket has refilled (they would start full
// anyway); if that frees nothing, it drops arbitrary entries, which can only
// make the limit looser for them, never lock anyone out.
func (l *rateLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now) >= l.rate {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.maxBuckets*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}
