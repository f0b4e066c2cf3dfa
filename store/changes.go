package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// queryer is what reads need from either a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// recordChange notes inside tx that subdomain changed and returns the
// change's sequence, the Version of the state it produces. Only the newest
// row per subdomain is kept: catching up needs to know what changed since a
// sequence, not the history. On PostgreSQL the notification is queued in the
// same transaction, so other instances hear of the change exactly when it
// commits. The caller holds the write lock (lockWrites), so sequences commit
// in order.
func (s *Store) recordChange(ctx context.Context, tx *sql.Tx, subdomain string) (int64, error) {
	var seq int64
	if err := tx.QueryRowContext(ctx, s.dialect.rebind(
		`INSERT INTO changes (subdomain, created_at) VALUES (?, ?) RETURNING seq`),
		subdomain, s.opts.Now().UnixNano()).Scan(&seq); err != nil {
		return 0, fmt.Errorf("record change: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM changes WHERE subdomain = ? AND seq < ?`), subdomain, seq); err != nil {
		return 0, fmt.Errorf("record change: compact: %w", err)
	}
	if s.follow != nil {
		// Noted before commit, so that the notification (or the poll),
		// which may come before this write's own delivery, does not read
		// it again.
		s.follow.published(seq)
	}
	if s.notifies() {
		if err := s.notify(ctx, tx, formatChange(seq, subdomain)); err != nil {
			return 0, fmt.Errorf("record change: %w", err)
		}
	}
	return seq, nil
}

// notifies reports whether other instances hear of changes by notification
// on a shared PostgreSQL (and record what they applied), rather than, on
// SQLite, by polling.
func (s *Store) notifies() bool {
	return s.follow != nil && s.follow.channel != ""
}

// notify sends payload on the instances' channel; inside tx it goes out
// when tx commits.
func (s *Store) notify(ctx context.Context, db execer, payload string) error {
	if _, err := db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, s.follow.channel, payload); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// confirmRequest starts the payload a waiting writer notifies after its
// change ("confirm <seq>"): every instance then records its applied
// sequence at once rather than at its next heartbeat.
const confirmRequest = "confirm "

// formatChange is the notification payload: "<seq> <subdomain>".
func formatChange(seq int64, subdomain string) string {
	return strconv.FormatInt(seq, 10) + " " + subdomain
}

func parseChange(payload string) (seq int64, subdomain string, err error) {
	num, sub, ok := strings.Cut(payload, " ")
	if !ok || sub == "" {
		return 0, "", fmt.Errorf("malformed change notification %q", payload)
	}
	seq, err = strconv.ParseInt(num, 10, 64)
	if err != nil || seq <= 0 {
		return 0, "", fmt.Errorf("malformed change notification %q", payload)
	}
	return seq, sub, nil
}

// readState reads the current state of subdomain with its version; a
// subdomain without an account is Deleted.
func (s *Store) readState(ctx context.Context, q queryer, subdomain string, now time.Time) (SubdomainState, error) {
	st := SubdomainState{Subdomain: subdomain}
	if err := q.QueryRowContext(ctx, s.dialect.rebind(
		`SELECT COALESCE(MAX(seq), 0) FROM changes WHERE subdomain = ?`), subdomain).Scan(&st.Version); err != nil {
		return st, fmt.Errorf("read state of %s: %w", subdomain, err)
	}
	var one int
	err := q.QueryRowContext(ctx, s.dialect.rebind(`SELECT 1 FROM accounts WHERE subdomain = ?`), subdomain).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		st.Deleted = true
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state of %s: %w", subdomain, err)
	}
	if st.Values, err = s.liveValues(ctx, q, subdomain, now); err != nil {
		return st, fmt.Errorf("read state of %s: %w", subdomain, err)
	}
	return st, nil
}

// snapshotTx begins a read-only transaction, on the read pool, that sees
// one consistent snapshot.
func (s *Store) snapshotTx(ctx context.Context) (*sql.Tx, error) {
	return s.read.BeginTx(ctx, s.dialect.snapshot())
}

// changeRetention is how long the change row of a deleted account (its
// tombstone) is kept before CompactChanges may remove it. It matches
// staleInstanceAge: an instance silent that long has lost its instances
// row, so compaction no longer waits for it.
const changeRetention = staleInstanceAge

// compactEvery is how often RunExpiry compacts the change feed.
const compactEvery = time.Hour

// CompactChanges removes the change rows of deleted accounts once nobody
// can need them. Every write already keeps only the newest row per
// subdomain (recordChange), so changes holds one row per live account plus
// one per account ever deleted: registration churn would grow it without
// bound. A tombstone is removed when it is older than changeRetention and
// every follower has applied it: on PostgreSQL every instance with a
// heartbeat row (an instance silent for a day loses its row and, when it
// comes back, finds the mark below and reports unhealthy until restarted,
// since it may have missed the deletion); on SQLite this process's poller,
// the only follower. The newest row is always kept, so the sequence
// followers compare against never goes back. The highest sequence removed
// is recorded in changes_compacted.
func (s *Store) CompactChanges(ctx context.Context) (removed int64, err error) {
	if s.follow == nil {
		return 0, nil
	}
	bound := s.follow.appliedSeq()
	cutoff := s.opts.Now().Add(-changeRetention).UnixNano()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if s.notifies() {
			var least sql.NullInt64
			if err := tx.QueryRowContext(ctx, `SELECT MIN(applied_seq) FROM instances`).Scan(&least); err != nil {
				return err
			}
			if least.Valid && least.Int64 < bound {
				bound = least.Int64
			}
		}
		var through sql.NullInt64
		if err := tx.QueryRowContext(ctx, s.dialect.rebind(
			`SELECT MAX(seq) FROM changes c WHERE seq <= ? AND created_at < ? AND seq < (SELECT MAX(seq) FROM changes)
			 AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.subdomain = c.subdomain)`), bound, cutoff).Scan(&through); err != nil {
			return err
		}
		if !through.Valid {
			return nil
		}
		res, err := tx.ExecContext(ctx, s.dialect.rebind(
			`DELETE FROM changes WHERE seq <= ? AND created_at < ?
			 AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.subdomain = changes.subdomain)`), through.Int64, cutoff)
		if err != nil {
			return err
		}
		if removed, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.dialect.rebind(
			`UPDATE changes_compacted SET through_seq = ? WHERE id = 1 AND through_seq < ?`), through.Int64, through.Int64)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: compact changes: %w", err)
	}
	if removed > 0 {
		s.log.Info("change feed compacted", "tombstones_removed", removed)
	}
	return removed, nil
}

// compactedThrough is the highest sequence compaction may have removed.
func (s *Store) compactedThrough(ctx context.Context, q queryer) (int64, error) {
	var through int64
	if err := q.QueryRowContext(ctx, `SELECT through_seq FROM changes_compacted WHERE id = 1`).Scan(&through); err != nil {
		return 0, fmt.Errorf("read compaction mark: %w", err)
	}
	return through, nil
}
