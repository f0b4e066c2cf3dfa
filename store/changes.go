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

// snapshotTx begins a read-only transaction that sees one consistent
// snapshot (PostgreSQL's default READ COMMITTED would let a change commit
// between two of its statements).
func (s *Store) snapshotTx(ctx context.Context) (*sql.Tx, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.dialect.name() == "postgres" {
		opts.Isolation = sql.LevelRepeatableRead
	}
	return s.db.BeginTx(ctx, opts)
}
