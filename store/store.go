// Package store owns persistence: accounts, their challenge values and (later)
// certificates. It is the single source of truth; the DNS server and the
// credential cache follow it through subscriptions rather than queries, so no
// DNS answer ever waits on the database.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os"
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
	// Version is the database's change sequence of this state: it grows
	// with every committed change, across every instance sharing the
	// database, so a subscriber may ignore a state older than one it
	// already applied. States read by Load from a database written before
	// change sequences existed carry 0.
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

	// The rest matters only on PostgreSQL, where several instances share
	// the database.

	// InstanceID names this instance in the instances table (heartbeats and
	// confirmations). Default: host name, process id and a random suffix.
	InstanceID string
	// ConfirmAll makes AddValue wait until every live instance serves the
	// new value (see ConfirmTimeout). Default false.
	ConfirmAll bool
	// ConfirmTimeout bounds that wait; AddValue then returns anyway (the
	// value is stored) and logs which instances lag. Default 3s.
	ConfirmTimeout time.Duration
	// HeartbeatInterval is how often an instance records that it is alive
	// and following; an instance silent for three intervals is not waited
	// for. Default 1s.
	HeartbeatInterval time.Duration
	// PollInterval is how often a SQLite store looks for changes other
	// processes committed to the same file (delegated account,
	// import-acme-dns while the daemon runs). Default 1s.
	PollInterval time.Duration
	// ReconnectDelay is the longest pause between attempts to re-establish
	// the change feed after a lost connection. Default 2s.
	ReconnectDelay time.Duration

	// KEK is the key-encryption key that seals TSIG secrets (seal.go; see
	// LoadKEK). Without it TSIG keys can be neither written nor read.
	KEK []byte
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
	if o.InstanceID == "" {
		o.InstanceID = defaultInstanceID()
	}
	if o.ConfirmTimeout <= 0 {
		o.ConfirmTimeout = 3 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.ReconnectDelay <= 0 {
		o.ReconnectDelay = 2 * time.Second
	}
}

func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
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

	// lockKey is the PostgreSQL advisory lock that orders writes of every
	// instance using this schema (see lockWrites).
	lockKey int64
	// follow is the change feed from other instances (PostgreSQL) or
	// processes (SQLite).
	follow *follower

	subMu  sync.RWMutex
	subs   map[int]func(SubdomainState)
	nextID int

	// keySubs receive TSIG key changes (tsig.go).
	keySubs keySubscribers
}

// Open opens (creating if needed) the store and applies pending schema
// migrations. driver is "sqlite3" (dsn is the database file path) or
// "postgres" (dsn is a postgres:// URL or key=value string). On PostgreSQL,
// Open also starts following the changes other instances make; it fails if
// it cannot listen for them.
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
	var schema string
	if d.name() == "postgres" {
		// Instances sharing a schema share its lock and change channel;
		// other schemas in the same database (tests) stay apart.
		if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			db.Close()
			return nil, fmt.Errorf("store: open postgres: %w", err)
		}
		h := fnv.New64a()
		h.Write([]byte("delegated/" + schema))
		s.lockKey = int64(h.Sum64())
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	var f *follower
	if d.name() == "postgres" {
		f, err = startFollower(ctx, s, dsn, "delegated_changes_"+schema)
	} else {
		f, err = startPoller(ctx, s)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	s.follow = f
	return s, nil
}

// Close stops following other instances and releases the database.
// Subscribers receive nothing more.
func (s *Store) Close() error {
	if s.follow != nil {
		s.follow.stop()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping reports whether the store can serve reads and writes and, on
// PostgreSQL, whether it follows the other instances' changes: while the
// change feed is down this instance may answer stale values, so it is not
// healthy even if queries work.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if s.follow != nil {
		if err := s.follow.health(); err != nil {
			return fmt.Errorf("store: ping: %w", err)
		}
	}
	return nil
}

// Subscribe registers fn to receive every SubdomainState committed from now
// on. For this instance's writes fn runs synchronously in the writer's
// goroutine before the write call returns (that is what makes a value served
// by DNS before /update answers); on PostgreSQL it also runs in the change
// follower's goroutine for other instances' writes, so calls may be
// concurrent and may, in rare races, repeat or precede an older state: apply
// a state only if its Version is not below the one held. fn must be fast
// and must not call back into the Store. The returned func removes the
// subscription.
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

// publish hands states this instance committed to every subscriber.
func (s *Store) publish(states ...SubdomainState) {
	s.deliver(states...)
}

// deliver hands states to every subscriber.
func (s *Store) deliver(states ...SubdomainState) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	for _, st := range states {
		for _, fn := range s.subs {
			fn(st)
		}
	}
}
