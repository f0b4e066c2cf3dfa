package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers database/sql driver "pgx"
	"github.com/mattn/go-sqlite3"
)

// dialect hides the few differences between the SQL databases we support.
// Queries are written once with '?' placeholders and rebound per dialect.
type dialect interface {
	name() string
	open(dsn string) (*sql.DB, error)
	rebind(query string) string
	isUniqueViolation(err error) bool
	// forUpdate is the suffix that locks selected rows until commit.
	forUpdate() string
}

func dialectFor(driver string) (dialect, error) {
	switch driver {
	case "sqlite3", "sqlite":
		return sqliteDialect{}, nil
	case "postgres", "postgresql", "pgx":
		return postgresDialect{}, nil
	}
	return nil, fmt.Errorf("store: unknown driver %q, expected \"sqlite3\" or \"postgres\"", driver)
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

// SQLite's immediate transactions already lock the whole database.
func (sqliteDialect) forUpdate() string { return "" }

func (sqliteDialect) isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrConstraint &&
		(se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

type postgresDialect struct{}

func (postgresDialect) name() string { return "postgres" }

// open uses pgx through database/sql. The pool is small: every write takes
// the store's advisory lock, so more writers would only queue in PostgreSQL;
// lifetimes recycle connections after a failover or a server restart.
func (postgresDialect) open(dsn string) (*sql.DB, error) {
	if dsn == "" {
		return nil, errors.New("empty postgres dsn")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(10)
	db.SetMaxIdleConns(5)
	db.SetConnMaxLifetime(30 * time.Minute)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

func (postgresDialect) rebind(q string) string { return rebindDollar(q) }

func (postgresDialect) forUpdate() string { return " FOR UPDATE" }

// uniqueViolation is SQLSTATE unique_violation.
const uniqueViolation = "23505"

func (postgresDialect) isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == uniqueViolation
}

// lockWrites serialises write transactions across every instance sharing a
// PostgreSQL database, so change sequences commit in the order they are
// assigned: a follower that saw sequence n has seen every change before n.
// SQLite's immediate transactions give the same order by themselves.
func (s *Store) lockWrites(ctx context.Context, tx *sql.Tx) error {
	if s.dialect.name() != "postgres" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
		return fmt.Errorf("lock writes: %w", err)
	}
	return nil
}

// rebindDollar turns '?' placeholders into $1, $2, … for PostgreSQL. Our
// queries contain no '?' inside string literals.
func rebindDollar(q string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}
