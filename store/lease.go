package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Lease errors.
var (
	// ErrLeaseHeld: another holder has the lease and it has not expired.
	ErrLeaseHeld = errors.New("store: lease held by another instance")
	// ErrLeaseLost: the lease expired, was taken over or released; the
	// holder must stop the work it guarded.
	ErrLeaseLost = errors.New("store: lease lost")
)

// AcquireLease takes the lease called name for holder until ttl from now and
// returns its fencing token. Tokens of a name grow with every acquisition
// (a holder re-acquiring its own lease gets a new one), so work stamped with
// a token can be refused once a newer token exists. An expired lease is
// taken over. It returns ErrLeaseHeld while another holder's lease runs.
//
// Expiry compares the instances' clocks (Options.Now), which must therefore
// agree to well within ttl.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (token int64, err error) {
	if name == "" || holder == "" || ttl <= 0 {
		return 0, fmt.Errorf("store: acquire lease %q: empty name or holder, or ttl not positive", name)
	}
	now := s.opts.Now()
	err = s.leaseTx(ctx, func(tx *sql.Tx) error {
		// The placeholder row makes the row lock below cover a first
		// acquisition too; token 0 is never handed out.
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(
			`INSERT INTO leases (name, holder, token, expires_at) VALUES (?, '', 0, 0) ON CONFLICT (name) DO NOTHING`), name); err != nil {
			return err
		}
		var (
			cur     string
			expires int64
		)
		if err := tx.QueryRowContext(ctx, s.dialect.rebind(
			`SELECT holder, token, expires_at FROM leases WHERE name = ?`+s.dialect.forUpdate()), name).
			Scan(&cur, &token, &expires); err != nil {
			return err
		}
		if cur != holder && expires > now.UnixNano() {
			return fmt.Errorf("%w (holder %s, until %s)", ErrLeaseHeld, cur, time.Unix(0, expires).UTC().Format(time.RFC3339))
		}
		token++
		_, err := tx.ExecContext(ctx, s.dialect.rebind(
			`UPDATE leases SET holder = ?, token = ?, expires_at = ? WHERE name = ?`),
			holder, token, now.Add(ttl).UnixNano(), name)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: acquire lease %q: %w", name, err)
	}
	return token, nil
}

// RenewLease extends the lease holder holds with token to ttl from now. It
// returns ErrLeaseLost when the lease expired (even if nobody took it: the
// holder cannot know that no one else worked meanwhile), was taken over or
// released.
func (s *Store) RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) error {
	err := s.leaseTx(ctx, func(tx *sql.Tx) error {
		return s.renewLeaseTx(ctx, tx, Fence{Lease: name, Holder: holder, Token: token, TTL: ttl})
	})
	if err != nil {
		return fmt.Errorf("store: renew lease %q: %w", name, err)
	}
	return nil
}

// renewLeaseTx extends f's lease to f.TTL from now within tx, or returns
// ErrLeaseLost when f's holder no longer holds it with f's token. The
// update keeps the row locked until tx ends.
func (s *Store) renewLeaseTx(ctx context.Context, tx *sql.Tx, f Fence) error {
	now := s.opts.Now()
	res, err := tx.ExecContext(ctx, s.dialect.rebind(
		`UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ? AND expires_at > ?`),
		now.Add(f.TTL).UnixNano(), f.Lease, f.Holder, f.Token, now.UnixNano())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// ReleaseLease ends the lease early so another instance may take it at once.
// Releasing a lease no longer held (expired, taken over) is not an error:
// there is nothing left to give up. The row stays, keeping the token
// counter, so tokens never repeat.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string, token int64) error {
	err := s.leaseTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.dialect.rebind(
			`UPDATE leases SET holder = '', expires_at = 0 WHERE name = ? AND holder = ? AND token = ?`),
			name, holder, token)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release lease %q: %w", name, err)
	}
	return nil
}

// leaseTx runs fn in a transaction. Leases do not take the zone's write
// lock: they change no subdomain, and the row lock orders them.
func (s *Store) leaseTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
