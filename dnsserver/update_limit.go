package dnsserver

import (
	"net/netip"
	"sync"
	"time"
)

// failLimiter counts failed signatures per source prefix (/24 IPv4, /56
// IPv6, as rate limiting does) in a token bucket: FailuresPerMinute tokens,
// refilled over a minute. A source out of tokens has its updates refused
// before any MAC is computed, which bounds both guessing and the work a
// flood of badly signed updates costs. Only the update path takes its
// lock; queries never see it.
type failLimiter struct {
	perMinute float64
	now       func() time.Time

	mu      sync.Mutex
	buckets map[uint64]failBucket
}

type failBucket struct {
	tokens float64
	at     time.Time
}

// maxFailBuckets bounds the table: past it, sources with full buckets
// (nothing to remember) are forgotten, then, if still full, all.
const maxFailBuckets = 1 << 16

func newFailLimiter(perMinute int, now func() time.Time) *failLimiter {
	return &failLimiter{perMinute: float64(perMinute), now: now, buckets: map[uint64]failBucket{}}
}

func (l *failLimiter) refill(b failBucket, now time.Time) failBucket {
	b.tokens = min(l.perMinute, b.tokens+now.Sub(b.at).Minutes()*l.perMinute)
	b.at = now
	return b
}

// blocked reports whether src has no failures left to spend.
func (l *failLimiter) blocked(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[prefixKey(src)]
	return ok && l.refill(b, l.now()).tokens < 1
}

// fail spends one of src's failures.
func (l *failLimiter) fail(src netip.Addr) {
	now := l.now()
	key := prefixKey(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxFailBuckets {
			l.evict(now)
		}
		b = failBucket{tokens: l.perMinute, at: now}
	}
	b = l.refill(b, now)
	b.tokens--
	l.buckets[key] = b
}

func (l *failLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now).tokens >= l.perMinute {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxFailBuckets {
		clear(l.buckets)
	}
}
