package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// CreateAccount stores a new account. It returns ErrConflict when the
// username or subdomain is taken. Subscribers learn that the subdomain now
// exists (with no values).
func (s *Store) CreateAccount(ctx context.Context, a Account) error {
	allow, err := encodePrefixes(a.AllowFrom)
	if err != nil {
		return err
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.opts.Now()
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var seq int64
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(
			`INSERT INTO accounts (username, key_hash, subdomain, allow_from, created_at) VALUES (?, ?, ?, ?, ?)`),
			a.Username, a.KeyHash, a.Subdomain, allow, a.CreatedAt.UnixNano()); err != nil {
			return err
		}
		seq, err = s.recordChange(ctx, tx, a.Subdomain)
		return err
	})
	if err != nil {
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("store: create account %s: %w", a.Username, ErrConflict)
		}
		return fmt.Errorf("store: create account %s: %w", a.Username, err)
	}
	s.publish(SubdomainState{Subdomain: a.Subdomain, Values: nil, Version: seq})
	return nil
}

// AccountByUsername returns the account or ErrNotFound.
func (s *Store) AccountByUsername(ctx context.Context, username string) (Account, error) {
	return s.account(ctx, `username = ?`, username)
}

func (s *Store) account(ctx context.Context, where, arg string) (Account, error) {
	var (
		a       Account
		allow   string
		created int64
	)
	err := s.read.QueryRowContext(ctx, s.dialect.rebind(
		`SELECT username, key_hash, subdomain, allow_from, created_at FROM accounts WHERE `+where), arg).
		Scan(&a.Username, &a.KeyHash, &a.Subdomain, &allow, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: account %s: %w", arg, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: account %s: %w", arg, err)
	}
	if a.AllowFrom, err = decodePrefixes(allow); err != nil {
		return Account{}, fmt.Errorf("store: account %s: %w", arg, err)
	}
	a.CreatedAt = time.Unix(0, created)
	return a, nil
}

// DeleteAccount removes the account and all its values; its subdomain stops
// existing in DNS. It returns ErrNotFound when there is no such account.
func (s *Store) DeleteAccount(ctx context.Context, username string) (err error) {
	defer func() { s.writes.record(err) }()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: delete account %s: %w", username, err)
	}
	defer tx.Rollback()
	if err := s.lockWrites(ctx, tx); err != nil {
		return fmt.Errorf("store: delete account %s: %w", username, err)
	}
	var subdomain string
	err = tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT subdomain FROM accounts WHERE username = ?`), username).Scan(&subdomain)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: delete account %s: %w", username, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: delete account %s: %w", username, err)
	}
	if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE subdomain = ?`), subdomain); err != nil {
		return fmt.Errorf("store: delete account %s: values: %w", username, err)
	}
	if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM accounts WHERE username = ?`), username); err != nil {
		return fmt.Errorf("store: delete account %s: %w", username, err)
	}
	seq, err := s.recordChange(ctx, tx, subdomain)
	if err != nil {
		return fmt.Errorf("store: delete account %s: %w", username, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: delete account %s: commit: %w", username, err)
	}
	s.publish(SubdomainState{Subdomain: subdomain, Deleted: true, Version: seq})
	return nil
}

// CountAccounts returns how many accounts exist.
func (s *Store) CountAccounts(ctx context.Context) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count accounts: %w", err)
	}
	return n, nil
}

func encodePrefixes(ps []netip.Prefix) (string, error) {
	strs := make([]string, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			return "", fmt.Errorf("store: invalid allowfrom prefix %v", p)
		}
		strs = append(strs, p.String())
	}
	b, err := json.Marshal(strs)
	if err != nil {
		return "", fmt.Errorf("store: encode allowfrom: %w", err)
	}
	return string(b), nil
}

func decodePrefixes(s string) ([]netip.Prefix, error) {
	var strs []string
	if err := json.Unmarshal([]byte(s), &strs); err != nil {
		return nil, fmt.Errorf("decode allowfrom: %w", err)
	}
	ps := make([]netip.Prefix, 0, len(strs))
	for _, str := range strs {
		p, err := netip.ParsePrefix(str)
		if err != nil {
			return nil, fmt.Errorf("decode allowfrom: %w", err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// writeTx runs change in a transaction that holds the write lock, and
// commits it.
func (s *Store) writeTx(ctx context.Context, change func(*sql.Tx) error) (err error) {
	defer func() { s.writes.record(s.classify(err)) }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.lockWrites(ctx, tx); err != nil {
		return err
	}
	if err := change(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// classify marks a unique violation as ErrConflict, so that write health
// does not count a taken name as a failing database.
func (s *Store) classify(err error) error {
	if err != nil && s.dialect.isUniqueViolation(err) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}
