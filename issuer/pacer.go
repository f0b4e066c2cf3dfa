package issuer

import (
	"context"
	"sync"
	"time"
)

// pacer spaces attempts at the CA: a token bucket of OrdersPerHour with a
// burst of MaxConcurrentOrders, so a restart or a backlog of due renewals
// never releases everything at once; and an account-wide pause while the
// CA's rate limit (a 429 with Retry-After) holds.
type pacer struct {
	interval time.Duration
	burst    float64
	now      func() time.Time

	mu          sync.Mutex
	tokens      float64
	last        time.Time
	pausedUntil time.Time
	pauseReason string
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
		switch {
		case now.Before(p.pausedUntil):
			d = p.pausedUntil.Sub(now)
		case p.tokens >= 1:
			p.tokens--
			p.mu.Unlock()
			return nil
		default:
			d = time.Duration((1 - p.tokens) * float64(p.interval))
		}
		p.mu.Unlock()
		// Re-evaluated at most every minute, so a pause that is lifted or
		// a clock that jumps is noticed.
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

// pause holds every attempt until until (a later until extends a pause in
// force); it reports whether this started a pause, so the 429s of
// concurrent orders say so in the log once, not each.
func (p *pacer) pause(until time.Time, reason string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	started := !p.now().Before(p.pausedUntil)
	if until.After(p.pausedUntil) {
		p.pausedUntil, p.pauseReason = until, reason
	}
	return started
}

// paused returns the pause in force (zero time when none).
func (p *pacer) paused() (time.Time, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.now().Before(p.pausedUntil) {
		return time.Time{}, ""
	}
	return p.pausedUntil, p.pauseReason
}
