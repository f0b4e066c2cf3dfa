package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DNSSEC key states, in the order a key goes through them during a
// rollover (see `delegated dnssec rollover`):
//
//	published: in the DNSKEY RRset (and signing it), not signing the zone
//	active:    signs the zone; exactly one key is active
//	retired:   still in the DNSKEY RRset (and signing it), no longer signing
//	           the zone; deleted by the withdraw step
const (
	KeyPublished = "published"
	KeyActive    = "active"
	KeyRetired   = "retired"
)

// ErrRolloverState is returned when a rollover step does not fit the keys'
// current states (e.g. a switch without a pre-published key).
var ErrRolloverState = errors.New("rollover step does not fit the current key states")

// DNSSECKey is one zone signing key. PrivateKey is the PKCS#8 DER of the
// private key; it is stored as the certificates' keys are (in the database,
// whose access control protects it) and DNSSECKey's LogValue omits it.
type DNSSECKey struct {
	ID         int64
	Algorithm  uint8
	PrivateKey []byte
	State      string
	CreatedAt  time.Time
	// ChangedAt is when the key entered its current state; the rollover
	// timeline counts from it.
	ChangedAt time.Time
}

// LogValue keeps the private key out of logs.
func (k DNSSECKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", k.ID), slog.Int("algorithm", int(k.Algorithm)), slog.String("state", k.State))
}

// String and GoString keep the private key out of anything formatted with
// fmt, a slice of keys included.
func (k DNSSECKey) String() string {
	return fmt.Sprintf("dnssec key %d (algorithm %d, %s)", k.ID, k.Algorithm, k.State)
}

// GoString is String for %#v.
func (k DNSSECKey) GoString() string { return k.String() }

// DNSSECKeys returns every key, oldest first.
func (s *Store) DNSSECKeys(ctx context.Context) ([]DNSSECKey, error) {
	keys, err := s.dnssecKeys(ctx, s.db)
	if err != nil {
		return nil, fmt.Errorf("store: dnssec keys: %w", err)
	}
	return keys, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) dnssecKeys(ctx context.Context, db querier) ([]DNSSECKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, algorithm, private_key, state, created_at, changed_at FROM dnssec_keys ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []DNSSECKey
	for rows.Next() {
		var (
			k                DNSSECKey
			alg              int
			priv             string
			created, changed int64
		)
		if err := rows.Scan(&k.ID, &alg, &priv, &k.State, &created, &changed); err != nil {
			return nil, err
		}
		der, err := base64.StdEncoding.DecodeString(priv)
		if err != nil {
			return nil, fmt.Errorf("key %d: private key is not base64: %w", k.ID, err)
		}
		k.Algorithm, k.PrivateKey = uint8(alg), der
		k.CreatedAt, k.ChangedAt = time.Unix(0, created), time.Unix(0, changed)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// EnsureDNSSECKey returns the keys, first creating an active key with
// generate when none is active (the first start with dnssec on). Two
// instances starting together create one key between them: the loser's
// insert violates the one-active index and it reads the winner's.
func (s *Store) EnsureDNSSECKey(ctx context.Context, algorithm uint8, generate func() ([]byte, error)) ([]DNSSECKey, error) {
	keys, err := s.DNSSECKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.State == KeyActive {
			return keys, nil
		}
	}
	der, err := generate()
	if err != nil {
		return nil, fmt.Errorf("store: generate dnssec key: %w", err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error { return s.insertKey(ctx, tx, algorithm, der, KeyActive) })
	if err != nil && !s.dialect.isUniqueViolation(err) {
		return nil, fmt.Errorf("store: create dnssec key: %w", err)
	}
	return s.DNSSECKeys(ctx)
}

func (s *Store) insertKey(ctx context.Context, tx *sql.Tx, algorithm uint8, der []byte, state string) error {
	now := s.opts.Now().UnixNano()
	_, err := tx.ExecContext(ctx, s.dialect.rebind(`INSERT INTO dnssec_keys (algorithm, private_key, state, created_at, changed_at) VALUES (?, ?, ?, ?, ?)`),
		int(algorithm), base64.StdEncoding.EncodeToString(der), state, now, now)
	return err
}

// PrepublishDNSSECKey adds a new key in state published: rollover step 1.
// It fails with ErrRolloverState unless exactly one key exists (active).
func (s *Store) PrepublishDNSSECKey(ctx context.Context, algorithm uint8, der []byte) error {
	return s.rolloverStep(ctx, "pre-publish", []string{KeyActive}, "exactly one key, the active one",
		func(tx *sql.Tx, _ []DNSSECKey, _ int64) error {
			return s.insertKey(ctx, tx, algorithm, der, KeyPublished)
		})
}

// SwitchDNSSECKey makes the published key active and the active one
// retired: rollover step 2.
func (s *Store) SwitchDNSSECKey(ctx context.Context) error {
	return s.rolloverStep(ctx, "switch", []string{KeyActive, KeyPublished}, "an active and a pre-published key",
		func(tx *sql.Tx, keys []DNSSECKey, now int64) error {
			// Retire first: the one-active index must hold after each statement.
			for _, step := range []struct {
				id    int64
				state string
			}{{keys[0].ID, KeyRetired}, {keys[1].ID, KeyActive}} {
				if _, err := tx.ExecContext(ctx, s.dialect.rebind(`UPDATE dnssec_keys SET state = ?, changed_at = ? WHERE id = ?`), step.state, now, step.id); err != nil {
					return err
				}
			}
			return nil
		})
}

// WithdrawDNSSECKey deletes the retired key: rollover step 3.
func (s *Store) WithdrawDNSSECKey(ctx context.Context) error {
	return s.rolloverStep(ctx, "withdraw", []string{KeyRetired, KeyActive}, "a retired and an active key",
		func(tx *sql.Tx, keys []DNSSECKey, _ int64) error {
			_, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM dnssec_keys WHERE id = ?`), keys[0].ID)
			return err
		})
}

// rolloverStep runs change under the write lock if the keys' states, oldest
// first, are want; otherwise it fails with ErrRolloverState and changes
// nothing.
func (s *Store) rolloverStep(ctx context.Context, step string, want []string, needs string, change func(tx *sql.Tx, keys []DNSSECKey, now int64) error) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		keys, err := s.dnssecKeys(ctx, tx)
		if err != nil {
			return err
		}
		ok := len(keys) == len(want)
		for i := 0; ok && i < len(keys); i++ {
			ok = keys[i].State == want[i]
		}
		if !ok {
			return fmt.Errorf("%w: %s needs %s (have %s)", ErrRolloverState, step, needs, keyStates(keys))
		}
		return change(tx, keys, s.opts.Now().UnixNano())
	})
	if err != nil {
		return fmt.Errorf("store: %s dnssec key: %w", step, err)
	}
	return nil
}

func keyStates(keys []DNSSECKey) string {
	if len(keys) == 0 {
		return "no key"
	}
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("key %d %s", k.ID, k.State)
	}
	return s
}

// cookieSecretSize is the SipHash-2-4 key size RFC 9018 uses.
const cookieSecretSize = 16

// CookieSecrets returns the DNS cookie secrets, newest first, shared by
// every instance on the database. When the newest is older than rotateAfter
// (or there is none) it first adds a fresh one, so the secret rotates with
// no coordination beyond the write lock; secrets older than three periods
// are deleted. The caller signs with the first and accepts them all. The
// common call (nothing to rotate) is one read without the write lock.
func (s *Store) CookieSecrets(ctx context.Context, rotateAfter time.Duration) ([][]byte, error) {
	now := s.opts.Now()
	secrets, newest, err := s.cookieSecrets(ctx, s.db)
	if err == nil && len(secrets) > 0 && now.Sub(newest) < rotateAfter {
		return secrets, nil
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		// Re-check under the lock: another instance may just have rotated.
		if secrets, newest, err = s.cookieSecrets(ctx, tx); err != nil {
			return err
		}
		if len(secrets) > 0 && now.Sub(newest) < rotateAfter {
			return nil
		}
		secret := make([]byte, cookieSecretSize)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(`INSERT INTO cookie_secrets (secret, created_at) VALUES (?, ?)`),
			base64.StdEncoding.EncodeToString(secret), now.UnixNano()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM cookie_secrets WHERE created_at < ?`), now.Add(-3*rotateAfter).UnixNano()); err != nil {
			return err
		}
		secrets, _, err = s.cookieSecrets(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: cookie secrets: %w", err)
	}
	return secrets, nil
}

// cookieSecrets reads the secrets newest first and the newest's time.
func (s *Store) cookieSecrets(ctx context.Context, db querier) ([][]byte, time.Time, error) {
	rows, err := db.QueryContext(ctx, `SELECT secret, created_at FROM cookie_secrets ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer rows.Close()
	var (
		out    [][]byte
		newest time.Time
	)
	for rows.Next() {
		var (
			enc     string
			created int64
		)
		if err := rows.Scan(&enc, &created); err != nil {
			return nil, time.Time{}, err
		}
		b, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(b) != cookieSecretSize {
			return nil, time.Time{}, fmt.Errorf("a stored cookie secret is not %d bytes of base64", cookieSecretSize)
		}
		if len(out) == 0 {
			newest = time.Unix(0, created)
		}
		out = append(out, b)
	}
	return out, newest, rows.Err()
}
