package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/mattn/go-sqlite3"
)

// dialect hides the few differences between the SQL databases we support.
// Queries are written once with '?' placeholders and rebound per dialect.
type dialect interface {
	name() string
	open(dsn string) (*sql.DB, error)
	migrations() []string
	rebind(query string) string
	isUniqueViolation(err error) bool
}

func dialectFor(driver string) (dialect, error) {
	switch driver {
	case "sqlite3", "sqlite":
		return sqliteDialect{}, nil
	}
	return nil, fmt.Errorf("store: unknown driver %q, expected \"sqlite3\"", driver)
}

type sqliteDialect struct{}

func (sqliteDialect) name() string { return "sqlite3" }

// open applies the settings that make an acknowledged write durable:
// WAL with synchronous=FULL survives kill -9 and power loss; the busy timeout
// and immediate transactions avoid SQLITE_BUSY between our own connections.
func (sqliteDialect) open(path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("empty database path")
	}
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	dsn := "file:" + escaped + "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_foreign_keys=on&_txlock=immediate"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	// One writer at a time is all SQLite allows; a few connections let reads
	// (health checks, the zone load) proceed beside a write under WAL.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	return db, nil
}

func (sqliteDialect) rebind(q string) string { return q }

func (sqliteDialect) isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrConstraint &&
		(se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

func (sqliteDialect) migrations() []string {
	return []string{
		// 1: accounts and their challenge values. Times are Unix nanoseconds.
		`CREATE TABLE accounts (
			username   TEXT PRIMARY KEY,
			key_hash   TEXT NOT NULL,
			subdomain  TEXT NOT NULL UNIQUE,
			allow_from TEXT NOT NULL DEFAULT '[]',
			created_at INTEGER NOT NULL
		);
		CREATE TABLE txt_values (
			seq        INTEGER PRIMARY KEY AUTOINCREMENT,
			subdomain  TEXT NOT NULL REFERENCES accounts(subdomain) ON DELETE CASCADE,
			value      TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			expires_at INTEGER NOT NULL
		);
		CREATE INDEX txt_values_by_subdomain ON txt_values(subdomain, seq);
		CREATE INDEX txt_values_by_expiry ON txt_values(expires_at);`,
	}
}
