package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// probeAfter is how long the last successful write vouches for the store:
// past it, a health check writes the probe row itself. A failed write is
// believed at once, and re-probed at most every reprobeAfter.
const (
	probeAfter   = 10 * time.Second
	reprobeAfter = time.Second
)

// writeHealth tracks whether the store takes writes: the outcome of the
// last real write, or of a probe when nothing was written for probeAfter.
// "SELECT 1" alone said healthy while a full disk failed every /update.
// Times are the wall clock's monotonic reading, not Options.Now: this is
// operational state, not data.
type writeHealth struct {
	mu        sync.Mutex
	lastOK    time.Time
	lastErr   error
	lastProbe time.Time
	probing   bool
}

// record notes a write's outcome. Errors that say nothing about the
// database (not found, conflict, the caller gone) are ignored.
func (w *writeHealth) record(err error) {
	if err != nil && !isStoreFailure(err) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.lastOK, w.lastErr = time.Now(), nil
		return
	}
	w.lastErr = err
}

// isStoreFailure reports whether a write's error means the database failed
// (rather than the request: no such account, a taken name, a caller that
// gave up).
func isStoreFailure(err error) bool {
	return !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// check returns why writes fail, probing when the last verdict is stale.
// Concurrent checks share one probe.
func (w *writeHealth) check(ctx context.Context, probe func(context.Context) error) error {
	w.mu.Lock()
	now := time.Now()
	fresh := w.lastErr == nil && now.Sub(w.lastOK) < probeAfter
	if fresh || w.probing || now.Sub(w.lastProbe) < reprobeAfter {
		err := w.lastErr
		w.mu.Unlock()
		return err
	}
	w.probing, w.lastProbe = true, now
	w.mu.Unlock()

	err := probe(ctx)
	w.mu.Lock()
	w.probing = false
	w.mu.Unlock()
	if err != nil && ctx.Err() != nil {
		// The health check's own deadline passed: the database is too slow
		// to answer, which the caller reports; keep the last verdict.
		return fmt.Errorf("write probe: %w", err)
	}
	w.record(err)
	if err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	return nil
}

// probeWrite rewrites the probe row in a transaction of its own: a commit
// that fails (full disk, read-only file or folder, lost connection) fails
// it as it fails /update.
func (s *Store) probeWrite(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(
		`INSERT INTO health_probe (id, probed_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at`),
		time.Now().UnixNano())
	return err
}
