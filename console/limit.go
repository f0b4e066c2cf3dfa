package console

import (
	"net/netip"
	"sync"
	"time"
)

// loginLimiter counts failed logins per source (Options.ClientSource) in
// a fixed window: after max failures the source is refused until its
// window ends. Right tokens are not counted, so an operator who mistyped
// a few times still gets in once the window passes; guessing a token at
// max per window is hopeless.
type loginLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	sources map[netip.Prefix]failures
}

type failures struct {
	n     int
	start time.Time
}

// maxSources bounds memory when many addresses fail; past it, expired
// windows are dropped, and if none has expired the oldest goes.
const maxSources = 10000

func newLoginLimiter(max int, window time.Duration, now func() time.Time) *loginLimiter {
	return &loginLimiter{max: max, window: window, now: now, sources: map[netip.Prefix]failures{}}
}

// blocked reports whether src has used up its failures, and until when.
func (l *loginLimiter) blocked(src netip.Prefix) (time.Time, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.sources[src]
	if !ok || now.Sub(f.start) >= l.window {
		return time.Time{}, false
	}
	return f.start.Add(l.window), f.n >= l.max
}

// fail records a failed login from src.
func (l *loginLimiter) fail(key netip.Prefix) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.sources[key]
	if !ok || now.Sub(f.start) >= l.window {
		if !ok && len(l.sources) >= maxSources {
			l.prune(now)
		}
		f = failures{start: now}
	}
	f.n++
	l.sources[key] = f
}

func (l *loginLimiter) prune(now time.Time) {
	var oldest netip.Prefix
	var oldestStart time.Time
	for k, f := range l.sources {
		if now.Sub(f.start) >= l.window {
			delete(l.sources, k)
			continue
		}
		if oldestStart.IsZero() || f.start.Before(oldestStart) {
			oldest, oldestStart = k, f.start
		}
	}
	if len(l.sources) >= maxSources {
		delete(l.sources, oldest)
	}
}
