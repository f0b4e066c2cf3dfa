package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
)

// persistentExpiry is the expires_at of a value that never expires: the
// expiry sweep and the live-value filter compare against it like any other.
const persistentExpiry = math.MaxInt64

// SetPersistentValue makes txt the only value of subdomain, one that never
// expires (it outlives [values] lifetime) until ClearValues or the
// account's deletion removes it. The issuer publishes dns-persist-01
// records this way: the CA may read the record at any time while the
// certificate exists. Like AddValueEverywhere it returns once every
// instance serving the zone answers the value. Setting the value already
// there changes nothing. ErrNotFound when no account owns subdomain.
func (s *Store) SetPersistentValue(ctx context.Context, subdomain, txt string) error {
	now := s.opts.Now()
	s.writeMu.Lock()
	var current []string
	st, err := s.inTx(ctx, subdomain, func(tx *sql.Tx) error {
		var err error
		if current, err = s.liveValues(ctx, tx, subdomain, now); err != nil {
			return err
		}
		if len(current) == 1 && current[0] == txt {
			return nil
		}
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE subdomain = ?`), subdomain); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.dialect.rebind(
			`INSERT INTO txt_values (subdomain, value, created_at, expires_at) VALUES (?, ?, ?, ?)`),
			subdomain, txt, now.UnixNano(), int64(persistentExpiry))
		return err
	})
	if err != nil {
		s.writeMu.Unlock()
		return fmt.Errorf("store: set persistent value of %s: %w", subdomain, err)
	}
	s.publish(st)
	s.writeMu.Unlock()
	s.confirmEverywhere(ctx, st.Version)
	return nil
}

// Values returns the live values of subdomain, oldest first: the issuer
// reads its dns-persist-01 record back before rewriting it. It reads
// from the write pool, so a value just set is seen.
func (s *Store) Values(ctx context.Context, subdomain string) ([]string, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: values of %s: %w", subdomain, err)
	}
	defer tx.Rollback()
	if err := s.requireSubdomain(ctx, tx, subdomain); err != nil {
		return nil, fmt.Errorf("store: values of %s: %w", subdomain, err)
	}
	vs, err := s.liveValues(ctx, tx, subdomain, s.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("store: values of %s: %w", subdomain, err)
	}
	return vs, nil
}
