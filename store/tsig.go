package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// TSIG algorithms accepted for account keys, as their DNS names.
const (
	HMACSHA256 = "hmac-sha256."
	HMACSHA512 = "hmac-sha512."
)

// Secret is key material. It never prints: fmt, slog and JSON see
// "[redacted]".
type Secret []byte

func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }
func (Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte("[redacted]")) }

// TSIGKey is an account's RFC 2136 update key (RFC 8945 TSIG). An account
// has at most one.
type TSIGKey struct {
	// Subdomain is the account's; the key may change only its values.
	Subdomain string
	// Name is the key's name as a lower-case FQDN, unique across accounts.
	Name string
	// Algorithm is HMACSHA256 or HMACSHA512.
	Algorithm string
	// Secret is the shared secret (32 random bytes when generated).
	Secret Secret
	// FreeTXT lets the key write any TXT value (up to 255 bytes) rather
	// than only ACME challenge values (43 base64url characters).
	FreeTXT   bool
	CreatedAt time.Time
}

// TSIGKeyState is an account's key after a committed change, pushed to key
// subscribers. Key nil means the account has no key (any more).
type TSIGKeyState struct {
	Subdomain string
	Key       *TSIGKey
	// Version orders states of one subdomain as SubdomainState.Version.
	Version int64
}

type keySubscribers struct {
	mu   sync.RWMutex
	subs map[int]func(TSIGKeyState)
	next int
}

// SubscribeTSIGKeys registers fn to receive every TSIG key change committed
// from now on, with the same rules as Subscribe: synchronous for this
// instance's writes, from the follower for others'. A follower's catch-up
// may hand a subdomain's key again under an older Version than one already
// delivered (it re-reads keys of changes this instance wrote itself), so
// fn applies a state only when its Version is newer than the one it holds,
// as dnsserver.TSIGKeys does.
// While someone subscribes, every followed change also re-reads the changed
// subdomain's key (one indexed read).
func (s *Store) SubscribeTSIGKeys(fn func(TSIGKeyState)) (cancel func()) {
	ks := &s.keySubs
	ks.mu.Lock()
	if ks.subs == nil {
		ks.subs = map[int]func(TSIGKeyState){}
	}
	id := ks.next
	ks.next++
	ks.subs[id] = fn
	ks.mu.Unlock()
	return func() {
		ks.mu.Lock()
		delete(ks.subs, id)
		ks.mu.Unlock()
	}
}

func (s *Store) keySubscribed() bool {
	s.keySubs.mu.RLock()
	defer s.keySubs.mu.RUnlock()
	return len(s.keySubs.subs) > 0
}

func (s *Store) deliverKey(st TSIGKeyState) {
	s.keySubs.mu.RLock()
	defer s.keySubs.mu.RUnlock()
	for _, fn := range s.keySubs.subs {
		fn(st)
	}
}

// deliverFollowed hands a changed subdomain's state, read in q, to the
// subscribers, and its key to the key subscribers. The follower calls it
// for changes other instances or processes committed.
func (s *Store) deliverFollowed(ctx context.Context, q queryer, sub string, now time.Time) error {
	st, err := s.readState(ctx, q, sub, now)
	if err != nil {
		return err
	}
	s.deliver(st)
	if st.Deleted {
		if s.keySubscribed() {
			s.deliverKey(TSIGKeyState{Subdomain: sub, Version: st.Version})
		}
		return nil
	}
	return s.deliverKeyOf(ctx, q, sub, st.Version)
}

// deliverKeyOf reads sub's key in q and hands it to the key subscribers as
// of version.
func (s *Store) deliverKeyOf(ctx context.Context, q queryer, sub string, version int64) error {
	if !s.keySubscribed() {
		return nil
	}
	ks := TSIGKeyState{Subdomain: sub, Version: version}
	k, err := s.readKey(ctx, q, sub)
	switch {
	case errors.Is(err, ErrNotFound):
	case isUnsealError(err):
		// A key that does not open here (another KEK) is left out;
		// the update then answers BADKEY, and this says why.
		s.log.Error("TSIG key not usable on this instance", "subdomain", sub, "err", err)
	case err != nil:
		return err
	default:
		ks.Key = &k
	}
	s.deliverKey(ks)
	return nil
}

// SetTSIGKey stores k as its account's key, replacing any previous one. It
// returns ErrNotFound when no account owns k.Subdomain, ErrConflict when
// another account's key has k.Name, and ErrNoKEK without a key-encryption
// key. Subscribers see the key before it returns.
func (s *Store) SetTSIGKey(ctx context.Context, k TSIGKey) error {
	if err := validKey(k); err != nil {
		return fmt.Errorf("store: set TSIG key %s: %w", k.Name, err)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.opts.Now()
	}
	sealed, err := seal(s.opts.KEK, k)
	if err != nil {
		return fmt.Errorf("store: set TSIG key %s: %w", k.Name, err)
	}
	free := 0
	if k.FreeTXT {
		free = 1
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st, err := s.inTx(ctx, k.Subdomain, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM tsig_keys WHERE subdomain = ?`), k.Subdomain); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.dialect.rebind(
			`INSERT INTO tsig_keys (subdomain, name, algorithm, sealed_secret, free_txt, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
			k.Subdomain, k.Name, k.Algorithm, sealed, free, k.CreatedAt.UnixNano())
		return err
	})
	if err != nil {
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("store: set TSIG key %s: %w", k.Name, ErrConflict)
		}
		return fmt.Errorf("store: set TSIG key %s: %w", k.Name, err)
	}
	s.publish(st)
	s.deliverKey(TSIGKeyState{Subdomain: k.Subdomain, Key: &k, Version: st.Version})
	return nil
}

func validKey(k TSIGKey) error {
	switch {
	case k.Subdomain == "":
		return errors.New("no subdomain")
	case k.Name == "" || k.Name[len(k.Name)-1] != '.':
		return errors.New("key name must be a fully qualified domain name")
	case k.Algorithm != HMACSHA256 && k.Algorithm != HMACSHA512:
		return fmt.Errorf("algorithm %q: expected %s or %s", k.Algorithm, HMACSHA256, HMACSHA512)
	case len(k.Secret) < 16:
		return errors.New("secret shorter than 16 bytes")
	}
	return nil
}

// RemoveTSIGKey deletes the account's key; updates signed with it are
// refused from then on (BADKEY). It returns ErrNotFound when the account
// has no key.
func (s *Store) RemoveTSIGKey(ctx context.Context, subdomain string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st, err := s.inTx(ctx, subdomain, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM tsig_keys WHERE subdomain = ?`), subdomain)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: remove TSIG key of %s: %w", subdomain, err)
	}
	s.publish(st)
	s.deliverKey(TSIGKeyState{Subdomain: subdomain, Version: st.Version})
	return nil
}

// TSIGKeyOf returns the account's key, unsealed, or ErrNotFound.
func (s *Store) TSIGKeyOf(ctx context.Context, subdomain string) (TSIGKey, error) {
	k, err := s.readKey(ctx, s.db, subdomain)
	if err != nil {
		return TSIGKey{}, fmt.Errorf("store: TSIG key of %s: %w", subdomain, err)
	}
	return k, nil
}

const keyColumns = `subdomain, name, algorithm, sealed_secret, free_txt, created_at`

func (s *Store) readKey(ctx context.Context, q queryer, subdomain string) (TSIGKey, error) {
	row := q.QueryRowContext(ctx, s.dialect.rebind(`SELECT `+keyColumns+` FROM tsig_keys WHERE subdomain = ?`), subdomain)
	k, err := s.scanKey(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return TSIGKey{}, ErrNotFound
	}
	return k, err
}

func (s *Store) scanKey(scan func(...any) error) (TSIGKey, error) {
	var (
		k       TSIGKey
		sealed  string
		free    int
		created int64
	)
	if err := scan(&k.Subdomain, &k.Name, &k.Algorithm, &sealed, &free, &created); err != nil {
		return TSIGKey{}, err
	}
	k.FreeTXT = free != 0
	k.CreatedAt = time.Unix(0, created)
	secret, err := unseal(s.opts.KEK, sealed, k)
	if err != nil {
		return TSIGKey{}, &unsealError{name: k.Name, err: err}
	}
	k.Secret = secret
	return k, nil
}

// unsealError is a key whose secret does not open with this store's KEK.
type unsealError struct {
	name string
	err  error
}

func (e *unsealError) Error() string { return "key " + e.name + ": " + e.err.Error() }
func (e *unsealError) Unwrap() error { return e.err }

func isUnsealError(err error) bool {
	var ue *unsealError
	return errors.As(err, &ue)
}

// LoadTSIGKeys streams every key, unsealed, to fn: how the DNS server's key
// cache starts. A key that does not unseal (another KEK) is logged and left
// out, so one bad row does not stop the server.
func (s *Store) LoadTSIGKeys(ctx context.Context, fn func(TSIGKey) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT `+keyColumns+` FROM tsig_keys`)
	if err != nil {
		return fmt.Errorf("store: load TSIG keys: %w", err)
	}
	defer rows.Close()
	var keys []TSIGKey
	for rows.Next() {
		k, err := s.scanKey(rows.Scan)
		if err != nil {
			s.log.Error("TSIG key not usable on this instance", "err", err)
			continue
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: load TSIG keys: %w", err)
	}
	rows.Close()
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}
