package issuer

import (
	"context"
	"sync"
	"time"
)

// pacer spaces attempts at the CA: a token bucket of OrdersPerHour with a
// burst of MaxConcurrentOrders, so a restart or a backlog of due renewals
// never releases everything at once. A CA's rate limit (a 429 with
// Retry-After) is not paced here: it pauses that CA in the store for every
// instance (cas.go), and attempts go to another CA meanwhile.
type pacer struct {
	interval time.Duration
	burst    float64
	now      func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newPacer(perHour, burst int, now func() time.Time) *pacer {
	return &pacer{interval: time.Hour / time.Duration(perHour), burst: float64(burst), tokens: float64(burst), now: now}
}

// wait blocks until an attempt may start (taking a token) or ctx ends.
func (p *pacer) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		now := p.now()
		p.refill(now)
		var d time.Duration
		if p.tokens >= 1 {
			p.tokens--
			p.mu.Unlock()
			return nil
		}
		d = time.Duration((1 - p.tokens) * float64(p.interval))
		p.mu.Unlock()
		// Re-evaluated at most every minute, so a clock that jumps is
		// noticed.
		t := time.NewTimer(min(max(d, time.Millisecond), time.Minute))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (p *pacer) refill(now time.Time) {
	if !p.last.IsZero() && now.After(p.last) {
		p.tokens = min(p.burst, p.tokens+float64(now.Sub(p.last))/float64(p.interval))
	}
	p.last = now
}

// refund returns a token taken for an attempt that did not happen.
func (p *pacer) refund() {
	p.mu.Lock()
	p.tokens = min(p.burst, p.tokens+1)
	p.mu.Unlock()
}
