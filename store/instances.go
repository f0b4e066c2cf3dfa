package store

import (
	"context"
	"time"
)

// An instance that has not written a heartbeat for livenessIntervals
// heartbeat intervals is presumed dead: confirmations stop waiting for it.
const livenessIntervals = 3

// staleInstanceAge is when a silent instance's row is deleted.
const staleInstanceAge = 24 * time.Hour

// heartbeat records, while the change feed is up, that this instance is
// alive and which change sequence its subscribers have applied: every
// HeartbeatInterval, and as soon as the applied sequence moves (so that a
// writer waiting for confirmations hears promptly). Bursts coalesce into one
// write. An instance whose feed is down stops heart-beating, so nobody waits
// for it.
func (f *follower) heartbeat(ctx context.Context) {
	t := time.NewTicker(f.s.opts.HeartbeatInterval)
	defer t.Stop()
	var (
		failing    bool
		lastPurged time.Time
	)
	// The first beat goes out at once, so that a writer waiting for
	// confirmations counts this instance from its start.
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-f.acked:
			}
		}
		if f.health() != nil {
			continue
		}
		now := f.s.opts.Now()
		_, err := f.s.db.ExecContext(ctx, `INSERT INTO instances (id, heartbeat_at, applied_seq) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, applied_seq = excluded.applied_seq`,
			f.s.opts.InstanceID, now.UnixNano(), f.appliedSeq())
		if err != nil && ctx.Err() == nil && !failing {
			f.s.log.Warn("heartbeat failed", "err", err)
		}
		failing = err != nil
		// Instances killed without a clean stop leave their row; nobody
		// waits for them, but the table should not grow forever.
		if err == nil && now.Sub(lastPurged) > staleInstanceAge/24 {
			lastPurged = now
			if _, err := f.s.db.ExecContext(ctx, `DELETE FROM instances WHERE heartbeat_at < $1`, now.Add(-staleInstanceAge).UnixNano()); err != nil && ctx.Err() == nil {
				f.s.log.Warn("purging stale instance rows failed", "err", err)
			}
		}
	}
}

// forgetInstance removes this instance's heartbeat at a clean stop, so that
// writers do not wait for it in the meantime.
func (s *Store) forgetInstance(ctx context.Context) {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM instances WHERE id = $1`, s.opts.InstanceID); err != nil {
		s.log.Warn("removing instance heartbeat failed", "err", err)
	}
}

// waitConfirmed waits, at most ConfirmTimeout, until every live instance has
// applied change seq. Polling is fine here: it runs only with ConfirmAll,
// once per update, for the few milliseconds followers need.
func (s *Store) waitConfirmed(ctx context.Context, seq int64) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ConfirmTimeout)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		lagging, err := s.laggingInstances(ctx, seq)
		if err == nil && len(lagging) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("update not confirmed by every instance in time", "seq", seq, "lagging", lagging, "err", err, "timeout", s.opts.ConfirmTimeout)
			return
		case <-t.C:
		}
	}
}

// laggingInstances lists live instances that have not applied seq.
func (s *Store) laggingInstances(ctx context.Context, seq int64) ([]string, error) {
	liveSince := s.opts.Now().Add(-livenessIntervals * s.opts.HeartbeatInterval).UnixNano()
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM instances WHERE heartbeat_at > $1 AND applied_seq < $2 ORDER BY id`, liveSince, seq)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
