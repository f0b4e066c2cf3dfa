// Package store owns persistence: accounts, their challenge values and (later)
// certificates. It is the single source of truth; the DNS server and the
// credential cache follow it through subscriptions rather than queries, so no
// DNS answer ever waits on the database.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Sentinel errors for callers to branch on with errors.Is.
var (
	// ErrNotFound: the account or subdomain does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a unique key (username or subdomain) is taken.
	ErrConflict = errors.New("store: already exists")
)

// Account is a registered acme-dns account. Username and Subdomain are
// canonical lower-case UUID strings; KeyHash is a bcrypt hash of the API key.
type Account struct {
	Username  string
	KeyHash   string
	Subdomain string
	AllowFrom []netip.Prefix
	CreatedAt time.Time
}

// SubdomainState is the complete current state of one subdomain, pushed to
// subscribers after every committed change. Carrying the whole value set (not
// a delta) makes applying it idempotent and order-safe together with Version.
type SubdomainState struct {
	Subdomain string
	// Values are the live TXT values, oldest first.
	Values []string
	// Deleted is true when the account was removed: the name stops existing.
	Deleted bool
	// Version increases with every committed change in this store; a
	// subscriber may ignore a state older than one it already applied.
	Version int64
}

// Options tunes a Store. Zero values mean the documented defaults.
type Options struct {
	// ValuesPerAccount is how many newest values an account keeps. Default 4.
	ValuesPerAccount int
	// ValueLifetime is how long a value is served after its update. Default 24h.
	ValueLifetime time.Duration
	// Now is the clock; default time.Now. Tests pass their own.
	Now func() time.Time
	// Logger receives operational messages; default slog.Default().
	Logger *slog.Logger
}

func (o *Options) applyDefaults() {
	if o.ValuesPerAccount <= 0 {
		o.ValuesPerAccount = 4
	}
	if o.ValueLifetime <= 0 {
		o.ValueLifetime = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Store is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect dialect
	opts    Options
	log     *slog.Logger

	// writeMu serialises writes within this process so that the states
	// published to subscribers are in commit order. SQLite has one writer
	// anyway, so it costs no throughput there.
	writeMu sync.Mutex
	version int64

	subMu  sync.RWMutex
	subs   map[int]func(SubdomainState)
	nextID int
}

// Open opens (creating if needed) the store and applies pending schema
// migrations. driver is "sqlite3"; dsn is the database file path.
func Open(ctx context.Context, driver, dsn string, opts Options) (*Store, error) {
	opts.applyDefaults()
	d, err := dialectFor(driver)
	if err != nil {
		return nil, err
	}
	db, err := d.open(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", driver, err)
	}
	s := &Store{db: db, dialect: d, opts: opts, log: opts.Logger.With("component", "store"), subs: map[int]func(SubdomainState){}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the database. Pending subscriptions receive nothing more.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping reports whether the store can serve reads and writes.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Subscribe registers fn to receive every SubdomainState committed from now
// on. fn runs synchronously in the writer's goroutine before the write call
// returns (that is what makes a value served by DNS before /update answers),
// so it must be fast and must not call back into the Store. The returned
// func removes the subscription.
func (s *Store) Subscribe(fn func(SubdomainState)) (cancel func()) {
	s.subMu.Lock()
	id := s.nextID
	s.nextID++
	s.subs[id] = fn
	s.subMu.Unlock()
	return func() {
		s.subMu.Lock()
		delete(s.subs, id)
		s.subMu.Unlock()
	}
}

func (s *Store) publish(states ...SubdomainState) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	for _, st := range states {
		for _, fn := range s.subs {
			fn(st)
		}
	}
}

// nextVersion must be called with writeMu held.
func (s *Store) nextVersion() int64 {
	s.version++
	return s.version
}
