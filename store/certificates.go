package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Certificate is one managed certificate: what was asked for, where it
// stands, and the issued material. Times are zero when unknown.
//
// KeyPEM is the certificate's private key. Certificate implements
// slog.LogValuer so that logging one never prints it.
type Certificate struct {
	Name    string
	Domains []string
	// Status is one of the issuer's status words ("pending delegation",
	// "processing", "active", "failed", "revoked"); the store does not
	// interpret it.
	Status    string
	LastError string
	// CertPEM is the leaf, ChainPEM the issuer chain, KeyPEM the private key.
	CertPEM, ChainPEM, KeyPEM string
	Serial                    string
	NotBefore, NotAfter       time.Time
	// Attempts counts consecutive failed attempts; NextAttempt is when the
	// issuer may try again.
	Attempts    int
	NextAttempt time.Time
	// RenewAt is the chosen renewal moment (zero: not chosen yet);
	// RenewCheckedAt when it was last chosen or confirmed (ARI is asked
	// again a day later).
	RenewAt, RenewCheckedAt time.Time
	// OrderURL is an ACME order in flight and OrderKeyPEM the key of its
	// CSR, kept so a restart resumes the order instead of placing another.
	OrderURL, OrderKeyPEM string
	// NextAction is when the issuer next has work on the certificate
	// (a delegation re-check, an attempt, a renewal, asking the CA's
	// renewal information); zero means never. It is indexed: the
	// scheduler finds due work through it.
	NextAction time.Time
	// CheckFailures counts consecutive delegation checks that got no
	// answer (the customer's name servers time out): they back off.
	CheckFailures int
	// RenewInfoAt is when the CA's renewal information (ARI) is asked
	// again; zero means a day after RenewCheckedAt.
	RenewInfoAt time.Time
	// CA names the configured CA that issued the current material ("" in
	// rows older than the column); CAPin, when set, is the only CA the
	// certificate may be ordered from; OrderCA is the CA of OrderURL.
	CA, CAPin, OrderCA string
	// Challenge is the validation method ("dns-01", "dns-account-01",
	// "dns-persist-01"; "" in rows older than the column means dns-01).
	// Profile is the ACME profile asked for in new orders ("": the CA's
	// default). The store does not interpret either.
	Challenge, Profile string
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

// LogValue keeps key material out of logs.
func (c Certificate) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.Any("domains", c.Domains),
		slog.String("status", c.Status),
		slog.String("serial", c.Serial),
	)
}

// ChallengeName maps a base name (a domain without its "*." prefix) to the
// challenge account whose subdomain its _acme-challenge CNAME points at.
// Certificates that share a base name share the mapping, because a name can
// hold only one CNAME.
type ChallengeName struct {
	BaseName  string
	Subdomain string
	Username  string
	CreatedAt time.Time
}

// ACMEAccount is a CA account, registered once per directory URL and email.
// KeyPEM is its private key; ACMEAccount's LogValue omits it.
type ACMEAccount struct {
	Directory string
	Email     string
	KeyPEM    string
	URI       string
	CreatedAt time.Time
}

// LogValue keeps the account key out of logs.
func (a ACMEAccount) LogValue() slog.Value {
	return slog.GroupValue(slog.String("directory", a.Directory), slog.String("email", a.Email), slog.String("uri", a.URI))
}

const certColumns = `name, domains, status, last_error, cert_pem, chain_pem, key_pem, serial,
	not_before, not_after, attempts, next_attempt, renew_at, renew_checked_at, order_url, order_key_pem,
	next_action, check_failures, renew_info_at, ca, ca_pin, order_ca, challenge, profile, created_at, updated_at`

// SaveCertificate inserts or replaces the certificate named c.Name.
func (s *Store) SaveCertificate(ctx context.Context, c Certificate) error {
	if err := s.saveCertificate(ctx, s.db, c); err != nil {
		return fmt.Errorf("store: save certificate %s: %w", c.Name, err)
	}
	return nil
}

// Fence names a lease and the claim on it that a write must still hold.
type Fence struct {
	Lease, Holder string
	Token         int64
	// TTL extends the lease from now when the write succeeds, as
	// RenewLease would.
	TTL time.Duration
}

// SaveCertificateFenced saves c only while f's holder still holds the lease
// with f's token and it has not expired, checked in the transaction that
// writes, and extends the lease. Otherwise it returns ErrLeaseLost and
// writes nothing. Checking before the write in a separate call left a
// window: an instance paused between check and write could overwrite what
// the instance that took its lease over had recorded meanwhile. On
// PostgreSQL the lease row stays locked until the write commits, so a
// takeover waits for it.
func (s *Store) SaveCertificateFenced(ctx context.Context, c Certificate, f Fence) error {
	err := s.leaseTx(ctx, func(tx *sql.Tx) error {
		if err := s.renewLeaseTx(ctx, tx, f); err != nil {
			return err
		}
		return s.saveCertificate(ctx, tx, c)
	})
	if err != nil {
		return fmt.Errorf("store: save certificate %s under lease %q: %w", c.Name, f.Lease, err)
	}
	return nil
}

// execer is what a write needs from *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *Store) saveCertificate(ctx context.Context, db execer, c Certificate) error {
	domains, err := json.Marshal(c.Domains)
	if err != nil {
		return err
	}
	now := s.opts.Now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	_, err = db.ExecContext(ctx, s.dialect.rebind(`INSERT INTO certificates (`+certColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET domains = excluded.domains, status = excluded.status,
			last_error = excluded.last_error, cert_pem = excluded.cert_pem, chain_pem = excluded.chain_pem,
			key_pem = excluded.key_pem, serial = excluded.serial, not_before = excluded.not_before,
			not_after = excluded.not_after, attempts = excluded.attempts, next_attempt = excluded.next_attempt,
			renew_at = excluded.renew_at, renew_checked_at = excluded.renew_checked_at, order_url = excluded.order_url,
			order_key_pem = excluded.order_key_pem, next_action = excluded.next_action,
			check_failures = excluded.check_failures, renew_info_at = excluded.renew_info_at,
			ca = excluded.ca, ca_pin = excluded.ca_pin, order_ca = excluded.order_ca,
			challenge = excluded.challenge, profile = excluded.profile, updated_at = excluded.updated_at`),
		c.Name, string(domains), c.Status, c.LastError, c.CertPEM, c.ChainPEM, c.KeyPEM, c.Serial,
		unixNano(c.NotBefore), unixNano(c.NotAfter), c.Attempts, unixNano(c.NextAttempt),
		unixNano(c.RenewAt), unixNano(c.RenewCheckedAt), c.OrderURL, c.OrderKeyPEM,
		unixNano(c.NextAction), c.CheckFailures, unixNano(c.RenewInfoAt), c.CA, c.CAPin, c.OrderCA, c.Challenge, c.Profile,
		c.CreatedAt.UnixNano(), now.UnixNano())
	return err
}

// CertificateByName returns the certificate or ErrNotFound.
func (s *Store) CertificateByName(ctx context.Context, name string) (Certificate, error) {
	rows, err := s.db.QueryContext(ctx, s.dialect.rebind(`SELECT `+certColumns+` FROM certificates WHERE name = ?`), name)
	if err != nil {
		return Certificate{}, fmt.Errorf("store: certificate %s: %w", name, err)
	}
	certs, err := scanCertificates(rows)
	if err != nil {
		return Certificate{}, fmt.Errorf("store: certificate %s: %w", name, err)
	}
	if len(certs) == 0 {
		return Certificate{}, fmt.Errorf("store: certificate %s: %w", name, ErrNotFound)
	}
	return certs[0], nil
}

// Certificates returns every certificate ordered by name.
func (s *Store) Certificates(ctx context.Context) ([]Certificate, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+certColumns+` FROM certificates ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: certificates: %w", err)
	}
	certs, err := scanCertificates(rows)
	if err != nil {
		return nil, fmt.Errorf("store: certificates: %w", err)
	}
	return certs, nil
}

// DeleteCertificate removes the certificate; ErrNotFound when absent.
func (s *Store) DeleteCertificate(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`DELETE FROM certificates WHERE name = ?`), name)
	if err != nil {
		return fmt.Errorf("store: delete certificate %s: %w", name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("store: delete certificate %s: %w", name, ErrNotFound)
	}
	return nil
}

func scanCertificates(rows *sql.Rows) ([]Certificate, error) {
	defer rows.Close()
	var out []Certificate
	for rows.Next() {
		var r certRow
		if err := rows.Scan(&r.c.Name, &r.domains, &r.c.Status, &r.c.LastError, &r.c.CertPEM, &r.c.ChainPEM, &r.c.KeyPEM, &r.c.Serial,
			&r.notBefore, &r.notAfter, &r.c.Attempts, &r.next, &r.renewAt, &r.checked, &r.c.OrderURL, &r.c.OrderKeyPEM,
			&r.nextAction, &r.c.CheckFailures, &r.renewInfo, &r.c.CA, &r.c.CAPin, &r.c.OrderCA, &r.c.Challenge, &r.c.Profile,
			&r.created, &r.updated); err != nil {
			return nil, err
		}
		c, err := r.certificate()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// certRow is a certificates row as scanned: domains as JSON, times as Unix
// nanoseconds.
type certRow struct {
	c                                           Certificate
	domains                                     string
	notBefore, notAfter, next, renewAt, checked int64
	nextAction, renewInfo, created, updated     int64
}

func (r *certRow) certificate() (Certificate, error) {
	c := r.c
	if err := json.Unmarshal([]byte(r.domains), &c.Domains); err != nil {
		return Certificate{}, fmt.Errorf("decode domains of %s: %w", c.Name, err)
	}
	c.NotBefore, c.NotAfter, c.NextAttempt = fromUnixNano(r.notBefore), fromUnixNano(r.notAfter), fromUnixNano(r.next)
	c.RenewAt, c.RenewCheckedAt = fromUnixNano(r.renewAt), fromUnixNano(r.checked)
	c.NextAction, c.RenewInfoAt = fromUnixNano(r.nextAction), fromUnixNano(r.renewInfo)
	c.CreatedAt, c.UpdatedAt = fromUnixNano(r.created), fromUnixNano(r.updated)
	return c, nil
}

// ChallengeNameByBase returns the mapping for baseName or ErrNotFound.
func (s *Store) ChallengeNameByBase(ctx context.Context, baseName string) (ChallengeName, error) {
	var (
		n       ChallengeName
		created int64
	)
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(
		`SELECT base_name, subdomain, username, created_at FROM challenge_names WHERE base_name = ?`), baseName).
		Scan(&n.BaseName, &n.Subdomain, &n.Username, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return ChallengeName{}, fmt.Errorf("store: challenge name %s: %w", baseName, ErrNotFound)
	}
	if err != nil {
		return ChallengeName{}, fmt.Errorf("store: challenge name %s: %w", baseName, err)
	}
	n.CreatedAt = time.Unix(0, created)
	return n, nil
}

// AddChallengeName records a mapping; ErrConflict when baseName already has
// one (the caller then reads the existing mapping and uses it).
func (s *Store) AddChallengeName(ctx context.Context, n ChallengeName) error {
	if n.CreatedAt.IsZero() {
		n.CreatedAt = s.opts.Now()
	}
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(
		`INSERT INTO challenge_names (base_name, subdomain, username, created_at) VALUES (?, ?, ?, ?)`),
		n.BaseName, n.Subdomain, n.Username, n.CreatedAt.UnixNano())
	if err != nil {
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("store: add challenge name %s: %w", n.BaseName, ErrConflict)
		}
		return fmt.Errorf("store: add challenge name %s: %w", n.BaseName, err)
	}
	return nil
}

// DeleteChallengeName removes the mapping (not the account); absent is not
// an error.
func (s *Store) DeleteChallengeName(ctx context.Context, baseName string) error {
	if _, err := s.db.ExecContext(ctx, s.dialect.rebind(`DELETE FROM challenge_names WHERE base_name = ?`), baseName); err != nil {
		return fmt.Errorf("store: delete challenge name %s: %w", baseName, err)
	}
	return nil
}

// ACMEAccountFor returns the account for directory and email or ErrNotFound.
func (s *Store) ACMEAccountFor(ctx context.Context, directory, email string) (ACMEAccount, error) {
	var (
		a       ACMEAccount
		created int64
	)
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(
		`SELECT directory, email, key_pem, uri, created_at FROM acme_accounts WHERE directory = ? AND email = ?`), directory, email).
		Scan(&a.Directory, &a.Email, &a.KeyPEM, &a.URI, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return ACMEAccount{}, fmt.Errorf("store: acme account %s at %s: %w", email, directory, ErrNotFound)
	}
	if err != nil {
		return ACMEAccount{}, fmt.Errorf("store: acme account %s at %s: %w", email, directory, err)
	}
	a.CreatedAt = time.Unix(0, created)
	return a, nil
}

// SaveACMEAccount inserts or replaces the account for its directory and email.
func (s *Store) SaveACMEAccount(ctx context.Context, a ACMEAccount) error {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.opts.Now()
	}
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`INSERT INTO acme_accounts (directory, email, key_pem, uri, created_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (directory, email) DO UPDATE SET key_pem = excluded.key_pem, uri = excluded.uri`),
		a.Directory, a.Email, a.KeyPEM, a.URI, a.CreatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("store: save acme account %s at %s: %w", a.Email, a.Directory, err)
	}
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// certificateSchema is migration 2 (certificates, challenge names, ACME
// accounts). It is plain SQL both SQLite and PostgreSQL accept: times are
// BIGINT Unix nanoseconds, PEM is TEXT.
const certificateSchema = `CREATE TABLE certificates (
		name         TEXT PRIMARY KEY,
		domains      TEXT NOT NULL,
		status       TEXT NOT NULL,
		last_error   TEXT NOT NULL DEFAULT '',
		cert_pem     TEXT NOT NULL DEFAULT '',
		chain_pem    TEXT NOT NULL DEFAULT '',
		key_pem      TEXT NOT NULL DEFAULT '',
		serial       TEXT NOT NULL DEFAULT '',
		not_before   BIGINT NOT NULL DEFAULT 0,
		not_after    BIGINT NOT NULL DEFAULT 0,
		attempts     INTEGER NOT NULL DEFAULT 0,
		next_attempt BIGINT NOT NULL DEFAULT 0,
		renew_at     BIGINT NOT NULL DEFAULT 0,
		renew_checked_at BIGINT NOT NULL DEFAULT 0,
		order_url    TEXT NOT NULL DEFAULT '',
		order_key_pem TEXT NOT NULL DEFAULT '',
		created_at   BIGINT NOT NULL,
		updated_at   BIGINT NOT NULL
	);
	CREATE TABLE challenge_names (
		base_name  TEXT PRIMARY KEY,
		subdomain  TEXT NOT NULL,
		username   TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE acme_accounts (
		directory  TEXT NOT NULL,
		email      TEXT NOT NULL,
		key_pem    TEXT NOT NULL,
		uri        TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (directory, email)
	);`
