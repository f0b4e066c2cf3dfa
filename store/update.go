package store

import (
	"context"
	"database/sql"
	"fmt"
)

// ValueOp is one step of an UpdateValues batch.
type ValueOp int

const (
	// OpAdd makes Value the newest value (as AddValue).
	OpAdd ValueOp = iota
	// OpRemove deletes Value (as RemoveValue).
	OpRemove
	// OpClear deletes every value (as ClearValues).
	OpClear
)

// ValueChange is one step of an UpdateValues batch.
type ValueChange struct {
	Op    ValueOp
	Value string
}

// UpdateValues applies changes to subdomain's values in order, as one
// transaction and one change: all or nothing, published to subscribers
// before it returns, durable when it returns, and (with ConfirmAll) served
// by every live instance, as AddValue. check, when not nil, sees the live
// values inside the transaction first (the RFC 2136 prerequisites); an
// error from it aborts the update and is returned as is (unwrapped), so
// callers can branch on their own errors. An unknown subdomain is
// ErrNotFound.
func (s *Store) UpdateValues(ctx context.Context, subdomain string, check func(live []string) error, changes []ValueChange) error {
	now := s.opts.Now()
	var checkErr error
	adds := false
	s.writeMu.Lock()
	st, err := s.inTx(ctx, subdomain, func(tx *sql.Tx) error {
		if check != nil {
			live, err := s.liveValues(ctx, tx, subdomain, now)
			if err != nil {
				return err
			}
			if checkErr = check(live); checkErr != nil {
				return checkErr
			}
		}
		for _, c := range changes {
			var err error
			switch c.Op {
			case OpAdd:
				adds = true
				err = s.addValueTx(ctx, tx, subdomain, c.Value, now)
			case OpRemove:
				_, err = tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE subdomain = ? AND value = ?`), subdomain, c.Value)
			case OpClear:
				_, err = tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM txt_values WHERE subdomain = ?`), subdomain)
			default:
				err = fmt.Errorf("unknown operation %d", c.Op)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if checkErr != nil {
		s.writeMu.Unlock()
		return checkErr
	}
	if err != nil {
		s.writeMu.Unlock()
		return fmt.Errorf("store: update values of %s: %w", subdomain, err)
	}
	s.publish(st)
	s.writeMu.Unlock()
	if adds && s.opts.ConfirmAll {
		s.confirmEverywhere(ctx, st.Version)
	}
	return nil
}
