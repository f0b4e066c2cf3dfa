package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers database/sql driver "pgx"
	"github.com/mattn/go-sqlite3"
)

// dialect hides the differences between the SQL databases we support.
// Queries are written once with '?' placeholders and rebound per dialect;
// every other difference is a method here, never a branch on the name.
type dialect interface {
	// name is the driver's name, for messages.
	name() string
	// open returns the pool for writes (and reads that must see this
	// process's uncommitted order, none today) and the pool for reads. They
	// may be the same pool.
	open(dsn string) (write, read *sql.DB, err error)
	rebind(query string) string
	isUniqueViolation(err error) bool
	// forUpdate is the suffix that locks selected rows until commit.
	forUpdate() string
	// lockWrites serialises, inside tx, every write transaction of every
	// process sharing the database (see Store.lockWrites).
	lockWrites(ctx context.Context, tx *sql.Tx, key int64) error
	// snapshot is how to begin a read-only transaction that sees one
	// consistent snapshot across its statements.
	snapshot() *sql.TxOptions
	// migrationSQL picks a migration step's text.
	migrationSQL(m migration) string
	// scope names what instances sharing the database share (their write
	// lock and change channel); empty when the database is one file.
	scope(ctx context.Context, db *sql.DB) (string, error)
	// follow starts following the changes other processes commit.
	follow(ctx context.Context, s *Store, dsn, scope string) (*follower, error)
	// load hands every account's state to fn, in subdomain order (see
	// Store.Load).
	load(ctx context.Context, s *Store, now int64, fn func(SubdomainState) error) error
	// warnExposed logs a warning when the database's files are readable
	// by other users.
	warnExposed(log *slog.Logger, dsn string)
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
//
// Reads get a pool of their own whose transactions are deferred: with
// _txlock=immediate every BeginTx, a read-only one included (go-sqlite3
// ignores TxOptions.ReadOnly), took the database's write lock, so the
// poller's snapshot every second queued behind writes and held writers up.
// The read pool is also query_only, so a write sent there by mistake fails
// instead of racing the writers.
//
// The file is created 0600 before SQLite opens it: it holds bcrypt hashes
// and the issuer's private keys, and SQLite gives the -wal and -shm files
// the database file's mode whatever the umask.
func (sqliteDialect) open(path string) (write, read *sql.DB, err error) {
	if path == "" {
		return nil, nil, errors.New("empty database path")
	}
	if err := createPrivate(path); err != nil {
		return nil, nil, err
	}
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	common := "file:" + escaped + "?_synchronous=FULL&_busy_timeout=10000&_foreign_keys=on"
	write, err = sql.Open("sqlite3", common+"&_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		return nil, nil, err
	}
	// One writer at a time is all SQLite allows; a few connections let
	// the issuer's autocommit reads, which still use this pool, proceed
	// beside a write under WAL.
	write.SetMaxOpenConns(4)
	write.SetMaxIdleConns(4)
	read, err = sql.Open("sqlite3", common+"&_txlock=deferred&_query_only=1")
	if err != nil {
		write.Close()
		return nil, nil, err
	}
	// Readers proceed beside the writer under WAL.
	read.SetMaxOpenConns(4)
	read.SetMaxIdleConns(4)
	return write, read, nil
}

func (sqliteDialect) load(ctx context.Context, s *Store, now int64, fn func(SubdomainState) error) error {
	return mergeLoad(ctx, s, now, fn)
}

func (sqliteDialect) rebind(q string) string { return q }

// SQLite's immediate transactions already lock the whole database.
func (sqliteDialect) forUpdate() string { return "" }

// lockWrites: SQLite's immediate transactions take the one write lock.
func (sqliteDialect) lockWrites(context.Context, *sql.Tx, int64) error { return nil }

// snapshot: a deferred transaction on the read pool reads one WAL snapshot
// from its first statement on.
func (sqliteDialect) snapshot() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

func (sqliteDialect) migrationSQL(m migration) string { return m.SQLite }

func (sqliteDialect) scope(context.Context, *sql.DB) (string, error) { return "", nil }

// follow polls: SQLite cannot notify.
func (sqliteDialect) follow(ctx context.Context, s *Store, _, _ string) (*follower, error) {
	return startPoller(ctx, s)
}

func (sqliteDialect) isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrConstraint &&
		(se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

type postgresDialect struct{}

func (postgresDialect) name() string { return "postgres" }

// open uses pgx through database/sql, one pool for reads and writes (a
// PostgreSQL read takes no lock a writer waits for). The pool is small:
// every write takes the store's advisory lock, so more writers would only
// queue in PostgreSQL; lifetimes recycle connections after a failover or a
// server restart.
func (postgresDialect) open(dsn string) (write, read *sql.DB, err error) {
	if dsn == "" {
		return nil, nil, errors.New("empty postgres dsn")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(10)
	db.SetMaxIdleConns(5)
	db.SetConnMaxLifetime(30 * time.Minute)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, db, nil
}

func (postgresDialect) load(ctx context.Context, s *Store, now int64, fn func(SubdomainState) error) error {
	return joinLoad(ctx, s, now, fn)
}

// warnExposed: PostgreSQL's files are the server's business.
func (postgresDialect) warnExposed(*slog.Logger, string) {}

func (postgresDialect) rebind(q string) string { return rebindDollar(q) }

func (postgresDialect) forUpdate() string { return " FOR UPDATE" }

func (postgresDialect) lockWrites(ctx context.Context, tx *sql.Tx, key int64) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		return fmt.Errorf("lock writes: %w", err)
	}
	return nil
}

// snapshot: PostgreSQL's default READ COMMITTED would let a change commit
// between two of the transaction's statements.
func (postgresDialect) snapshot() *sql.TxOptions {
	return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
}

func (postgresDialect) migrationSQL(m migration) string {
	if m.Postgres != "" {
		return m.Postgres
	}
	return m.SQLite
}

// scope is the current schema: instances sharing a schema share its lock
// and change channel; other schemas in the same database (tests) stay
// apart.
func (postgresDialect) scope(ctx context.Context, db *sql.DB) (string, error) {
	var schema string
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", err
	}
	return schema, nil
}

// follow listens on the schema's channel.
func (postgresDialect) follow(ctx context.Context, s *Store, dsn, schema string) (*follower, error) {
	return startFollower(ctx, s, dsn, "delegated_changes_"+schema)
}

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
	return s.dialect.lockWrites(ctx, tx, s.lockKey)
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
