package store

import (
	"context"
	"fmt"
)

// migrate applies the migrations the database has not seen, each in its own
// transaction together with its schema_migrations row, so a crash mid-way
// leaves a consistent, resumable schema. Each step holds the write lock, so
// instances starting together against one PostgreSQL apply every step once.
func (s *Store) migrate(ctx context.Context) error {
	all := migrations()
	for {
		applied, err := s.migrateStep(ctx, all)
		if err != nil {
			return err
		}
		if !applied {
			return nil
		}
	}
}

// migrateStep applies the next pending step, reporting whether there was one.
func (s *Store) migrateStep(ctx context.Context, all []migration) (applied bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: migrate: begin: %w", err)
	}
	defer tx.Rollback()
	if err := s.lockWrites(ctx, tx); err != nil {
		return false, fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return false, fmt.Errorf("store: create schema_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return false, fmt.Errorf("store: read schema version: %w", err)
	}
	if current > len(all) {
		return false, fmt.Errorf("store: database schema version %d is newer than this program knows (%d): upgrade delegated", current, len(all))
	}
	if current == len(all) {
		return false, tx.Commit()
	}
	v := current + 1
	if _, err := tx.ExecContext(ctx, s.dialect.migrationSQL(all[v-1])); err != nil {
		return false, fmt.Errorf("store: migration %d (%s): %w", v, all[v-1].Name, err)
	}
	if _, err := tx.ExecContext(ctx, s.dialect.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), v, s.opts.Now().UnixNano()); err != nil {
		return false, fmt.Errorf("store: migration %d: record: %w", v, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: migration %d: commit: %w", v, err)
	}
	s.log.Info("schema migrated", "version", v, "step", all[v-1].Name)
	return true, nil
}
