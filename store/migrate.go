package store

import (
	"context"
	"fmt"
)

// migrate applies the dialect's migrations that the database has not seen,
// each in its own transaction together with its schema_migrations row, so a
// crash mid-way leaves a consistent, resumable schema.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	var current int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("store: read schema version: %w", err)
	}
	all := s.dialect.migrations()
	if current > len(all) {
		return fmt.Errorf("store: database schema version %d is newer than this program knows (%d): upgrade delegated", current, len(all))
	}
	for v := current + 1; v <= len(all); v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: migration %d: begin: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, all[v-1]); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), v, s.opts.Now().UnixNano()); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: record: %w", v, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migration %d: commit: %w", v, err)
		}
		s.log.Info("schema migrated", "version", v)
	}
	return nil
}
