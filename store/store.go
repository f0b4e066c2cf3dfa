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
		o.InstanceID = NewInstanceID()
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

// NewInstanceID names a process among those sharing a database:
// "host/pid/random". Host and pid let an operator (and the failover test)
// tell which process holds what; the random part keeps a restarted process
// with a recycled pid, or a pid repeated across containers, distinct. cmd makes one per process and hands it to the store and the
// issuer, so heartbeats and leases name the same instance.
func NewInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Store is safe for concurrent use.
type Store struct {
	// db takes writes; read serves reads that need no write lock (on
	// PostgreSQL the same pool).
	db      *sql.DB
	read    *sql.DB
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

	// writes is what /health learns about the store's ability to write.
	writes writeHealth

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
	db, read, err := d.open(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", driver, err)
	}
	closeAll := func() {
		db.Close()
		if read != db {
			read.Close()
		}
	}
	s := &Store{db: db, read: read, dialect: d, opts: opts, log: opts.Logger.With("component", "store"), subs: map[int]func(SubdomainState){}}
	scope, err := d.scope(ctx, db)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("store: open %s: %w", driver, err)
	}
	h := fnv.New64a()
	h.Write([]byte("delegated/" + scope))
	s.lockKey = int64(h.Sum64())
	if err := s.migrate(ctx); err != nil {
		closeAll()
		return nil, err
	}
	d.warnExposed(s.log, dsn)
	f, err := d.follow(ctx, s, dsn, scope)
	if err != nil {
		closeAll()
		return nil, err
	}
	s.follow = f
	return s, nil
}

// InstanceID is the name this process has among those sharing the
// database (Options.InstanceID).
func (s *Store) InstanceID() string { return s.opts.InstanceID }

// Close stops following other instances and releases the database.
// Subscribers receive nothing more.
func (s *Store) Close() error {
	if s.follow != nil {
		s.follow.stop()
	}
	err := s.db.Close()
	if s.read != s.db {
		err = errors.Join(err, s.read.Close())
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping reports whether the store can serve reads and take writes and
// whether it follows the changes other instances (PostgreSQL) or processes
// (SQLite) commit: while the change feed is down this instance may answer
// stale values, and while writes fail every /update does, so it is not
// healthy even if reads work. Writes are judged by the last write's outcome
// and, when nothing was written for a while, by a probe (see writeHealth).
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if err := s.writes.check(ctx, s.probeWrite); err != nil {
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
