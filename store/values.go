package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// AddValue makes txt a live value of subdomain. The newest ValuesPerAccount
// values stay; the insertion sequence (never the wall clock) decides which is
// oldest. Adding a value that is already live refreshes it as the newest
// instead of storing a duplicate. Subscribers see the new state before
// AddValue returns. It returns ErrNotFound when no account owns subdomain.
// With ConfirmAll it also waits, as AddValueEverywhere does.
func (s *Store) AddValue(ctx context.Context, subdomain, txt string) error {
	return s.addValue(ctx, subdomain, txt, s.opts.ConfirmAll)
}

// AddValueEverywhere is AddValue that, on PostgreSQL, also waits until every
// live instance has applied the change (at most ConfirmTimeout), whatever
// ConfirmAll says. The bundled issuer presents its challenge values this
// way: it asks the CA to validate right after presenting, and the CA's
// resolver may ask any instance. Without the wait, a failed-over order in
// CI was validated against an instance that had not heard of the value yet
// ("No TXT records found"). The writer notifies a request to confirm after
// its change, so the instances record what they applied at once rather than
// at their next heartbeat: the wait is a few milliseconds.
func (s *Store) AddValueEverywhere(ctx context.Context, subdomain, txt string) error {
	return s.addValue(ctx, subdomain, txt, true)
}

func (s *Store) addValue(ctx context.Context, subdomain, txt string, confirm bool) error {
	now := s.opts.Now()
	s.writeMu.Lock()
	st, err := s.inTx(ctx, subdomain, func(tx *sql.Tx) error {
		return s.addValueTx(ctx, tx, subdomain, txt, now)
	})
	if err != nil {
		s.writeMu.Unlock()
		return fmt.Errorf("store: add value to %s: %w", subdomain, err)
	}
	s.publish(st)
	// Wait outside the lock: other writes need not queue behind the
	// confirmation of this one.
	s.writeMu.Unlock()
	if confirm {
		s.confirmEverywhere(ctx, st.Version)
	}
	return nil
}

// confirmEverywhere waits, on PostgreSQL, until every live instance has
// applied version (at most ConfirmTimeout).
func (s *Store) confirmEverywhere(ctx context.Context, version int64) {
	if !s.notifies() {
		return
	}
	if err := s.notify(ctx, s.db, confirmRequest+strconv.FormatInt(version, 10)); err != nil {
		// The instances still record it with their next heartbeat.
		s.log.Debug("asking instances to confirm at once failed", "err", err)
	}
	s.waitConfirmed(ctx, version)
}

// addValueTx makes txt the newest value of subdomain inside tx and trims
// the values to the newest ValuesPerAccount live ones.
func (s *Store) addValueTx(ctx context.Context, tx *sql.Tx, subdomain, txt string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE subdomain = ? AND value = ?`), subdomain, txt); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.dialect.rebind(
		`INSERT INTO txt_values (subdomain, value, created_at, expires_at) VALUES (?, ?, ?, ?)`),
		subdomain, txt, now.UnixNano(), now.Add(s.opts.ValueLifetime).UnixNano()); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.dialect.rebind(
		`DELETE FROM txt_values WHERE subdomain = ? AND (expires_at <= ? OR seq NOT IN (
			SELECT seq FROM txt_values WHERE subdomain = ? ORDER BY seq DESC LIMIT ?))`),
		subdomain, now.UnixNano(), subdomain, s.opts.ValuesPerAccount)
	return err
}

// RemoveValue deletes one value of subdomain. Removing a value that is not
// there is not an error (cleanup may run twice); an unknown subdomain is
// ErrNotFound.
func (s *Store) RemoveValue(ctx context.Context, subdomain, txt string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st, err := s.inTx(ctx, subdomain, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE subdomain = ? AND value = ?`), subdomain, txt)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: remove value from %s: %w", subdomain, err)
	}
	s.publish(st)
	return nil
}

// ClearValues deletes every value of subdomain.
func (s *Store) ClearValues(ctx context.Context, subdomain string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st, err := s.inTx(ctx, subdomain, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE subdomain = ?`), subdomain)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: clear values of %s: %w", subdomain, err)
	}
	s.publish(st)
	return nil
}

// Republish re-reads subdomain's committed state and hands it to
// subscribers, in commit order with every other write, changing no data. A
// process that wrote to the database outside this Store (the CLI's
// `account add` on SQLite) asks the daemon for it so its DNS view learns of
// the account at once.
func (s *Store) Republish(ctx context.Context, subdomain string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var key *TSIGKey
	st, err := s.inTx(ctx, subdomain, func(tx *sql.Tx) error {
		if !s.keySubscribed() {
			return nil
		}
		k, err := s.readKey(ctx, tx, subdomain)
		if err == nil {
			key = &k
		} else if !errors.Is(err, ErrNotFound) {
			s.log.Error("TSIG key not usable on this instance", "subdomain", subdomain, "err", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: republish %s: %w", subdomain, err)
	}
	s.publish(st)
	if s.keySubscribed() {
		// `account add --tsig` asks for this: the key answers at once.
		s.deliverKey(TSIGKeyState{Subdomain: subdomain, Key: key, Version: st.Version})
	}
	return nil
}

// CountValues returns how many values are live across all accounts.
func (s *Store) CountValues(ctx context.Context) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, s.dialect.rebind(`SELECT COUNT(*) FROM txt_values WHERE expires_at > ?`), s.opts.Now().UnixNano()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count values: %w", err)
	}
	return n, nil
}

// inTx runs change for an existing subdomain inside a write transaction,
// records the change, and returns the subdomain's state as committed.
func (s *Store) inTx(ctx context.Context, subdomain string, change func(*sql.Tx) error) (SubdomainState, error) {
	st := SubdomainState{Subdomain: subdomain}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := s.requireSubdomain(ctx, tx, subdomain); err != nil {
			return err
		}
		if err := change(tx); err != nil {
			return err
		}
		var err error
		if st.Version, err = s.recordChange(ctx, tx, subdomain); err != nil {
			return err
		}
		st.Values, err = s.liveValues(ctx, tx, subdomain, s.opts.Now())
		return err
	})
	return st, err
}

func (s *Store) requireSubdomain(ctx context.Context, tx *sql.Tx, subdomain string) error {
	var one int
	err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT 1 FROM accounts WHERE subdomain = ?`), subdomain).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

func (s *Store) liveValues(ctx context.Context, q queryer, subdomain string, now time.Time) ([]string, error) {
	rows, err := q.QueryContext(ctx, s.dialect.rebind(
		`SELECT value FROM txt_values WHERE subdomain = ? AND expires_at > ? ORDER BY seq`), subdomain, now.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var values []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		values = append(values, v)
	}
	return values, rows.Err()
}

// The expiry queries must search the by-expiry index (a test checks the
// plan). SELECT DISTINCT subdomain is not used: SQLite answers it by walking
// the whole by-subdomain index instead, 78 ms at a million values, every
// second; the subdomains are deduplicated in Go.
const (
	anyExpiredQuery        = `SELECT 1 FROM txt_values WHERE expires_at <= ? LIMIT 1`
	expiredSubdomainsQuery = `SELECT subdomain FROM txt_values WHERE expires_at <= ?`
)

// ExpireValues deletes values whose lifetime has passed and publishes the
// new state of each subdomain it touched.
func (s *Store) ExpireValues(ctx context.Context) error {
	now := s.opts.Now()
	// This runs every second on every instance: when nothing has expired,
	// which is nearly always, it must not take the write lock, which on
	// PostgreSQL is shared by all instances.
	var found int
	err := s.read.QueryRowContext(ctx, s.dialect.rebind(anyExpiredQuery), now.UnixNano()).Scan(&found)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("store: expire values: %w", err)
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.expire(ctx, now)
}

func (s *Store) expire(ctx context.Context, now time.Time) (err error) {
	defer func() { s.writes.record(err) }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: expire values: %w", err)
	}
	defer tx.Rollback()
	if err := s.lockWrites(ctx, tx); err != nil {
		return fmt.Errorf("store: expire values: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.dialect.rebind(expiredSubdomainsQuery), now.UnixNano())
	if err != nil {
		return fmt.Errorf("store: expire values: %w", err)
	}
	var touched []string
	seen := map[string]bool{}
	for rows.Next() {
		var sub string
		if err := rows.Scan(&sub); err != nil {
			rows.Close()
			return fmt.Errorf("store: expire values: %w", err)
		}
		if !seen[sub] {
			seen[sub] = true
			touched = append(touched, sub)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: expire values: %w", err)
	}
	if len(touched) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE expires_at <= ?`), now.UnixNano()); err != nil {
		return fmt.Errorf("store: expire values: %w", err)
	}
	states := make([]SubdomainState, 0, len(touched))
	for _, sub := range touched {
		seq, err := s.recordChange(ctx, tx, sub)
		if err != nil {
			return fmt.Errorf("store: expire values: %w", err)
		}
		values, err := s.liveValues(ctx, tx, sub, now)
		if err != nil {
			return fmt.Errorf("store: expire values: %w", err)
		}
		states = append(states, SubdomainState{Subdomain: sub, Values: values, Version: seq})
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: expire values: commit: %w", err)
	}
	s.publish(states...)
	s.log.Debug("values expired", "subdomains", len(states))
	return nil
}

// RunExpiry calls ExpireValues every interval until ctx ends. Values are also
// filtered by expiry when read, so the interval only bounds how long an
// expired value may still be answered in DNS.
// It also compacts the change feed every compactEvery (CompactChanges).
func (s *Store) RunExpiry(ctx context.Context, interval time.Duration) {
	lastCompact := time.Now()
	every(ctx, interval, func() {
		if err := s.ExpireValues(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("expiring values failed", "err", err)
		}
		if time.Since(lastCompact) >= compactEvery {
			lastCompact = time.Now()
			if _, err := s.CompactChanges(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("compacting the change feed failed", "err", err)
			}
		}
	})
}

// every calls fn each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
