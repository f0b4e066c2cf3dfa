package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The issuer at fleet scale reads certificates through these: listings from
// summary columns (never the key material), due work through the
// next_action index, and batched, compare-and-set delegation check results.

// summaryColumns are what an operator sees of a certificate: no PEM, no
// order state.
const summaryColumns = `name, domains, status, last_error, serial, not_before, not_after, attempts,
	next_attempt, renew_at, renew_checked_at, next_action, check_failures, renew_info_at, ca, ca_pin, challenge, profile,
	created_at, updated_at`

// CertificateFilter selects certificates of a listing; zero fields match all.
type CertificateFilter struct {
	// Status is one of the issuer's status words.
	Status string
	// Domain matches certificates with a domain equal to it or under it
	// ("example.com" matches "www.example.com" and "*.example.com").
	Domain string
}

// Matches reports whether domains fall under f.Domain.
func (f CertificateFilter) matchesDomains(domains []string) bool {
	if f.Domain == "" {
		return true
	}
	for _, d := range domains {
		if d == f.Domain || strings.HasSuffix(d, "."+f.Domain) {
			return true
		}
	}
	return false
}

// likeEscape escapes s for a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// CertificateSummaries returns the certificates f selects, ordered by name,
// without key material, certificate PEM or order state (those fields are
// empty): what a listing shows, read from a fleet without loading it.
func (s *Store) CertificateSummaries(ctx context.Context, f CertificateFilter) ([]Certificate, error) {
	f.Domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(f.Domain), "."))
	q := `SELECT ` + summaryColumns + ` FROM certificates WHERE 1 = 1`
	var args []any
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	if f.Domain != "" {
		// A coarse filter on the JSON text; matchesDomains decides.
		q += ` AND domains LIKE ? ESCAPE '\'`
		args = append(args, "%"+likeEscape(f.Domain)+`"%`)
	}
	rows, err := s.db.QueryContext(ctx, s.dialect.rebind(q+` ORDER BY name`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: certificate summaries: %w", err)
	}
	defer rows.Close()
	var out []Certificate
	for rows.Next() {
		var r certRow
		if err := rows.Scan(&r.c.Name, &r.domains, &r.c.Status, &r.c.LastError, &r.c.Serial, &r.notBefore, &r.notAfter, &r.c.Attempts,
			&r.next, &r.renewAt, &r.checked, &r.nextAction, &r.c.CheckFailures, &r.renewInfo, &r.c.CA, &r.c.CAPin,
			&r.c.Challenge, &r.c.Profile, &r.created, &r.updated); err != nil {
			return nil, fmt.Errorf("store: certificate summaries: %w", err)
		}
		c, err := r.certificate()
		if err != nil {
			return nil, fmt.Errorf("store: certificate summaries: %w", err)
		}
		if f.matchesDomains(c.Domains) {
			out = append(out, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: certificate summaries: %w", err)
	}
	return out, nil
}

// Due is a certificate whose next action has come.
type Due struct {
	Name       string
	Status     string
	NextAction time.Time
}

// DueCertificates returns up to limit certificates with status whose next
// action is at or before now, the longest waiting first (a range scan of
// the (status, next_action) index).
func (s *Store) DueCertificates(ctx context.Context, now time.Time, status string, limit int) ([]Due, error) {
	rows, err := s.db.QueryContext(ctx, s.dialect.rebind(
		`SELECT name, status, next_action FROM certificates WHERE status = ? AND next_action > 0 AND next_action <= ? ORDER BY next_action LIMIT ?`),
		status, now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due certificates: %w", err)
	}
	defer rows.Close()
	var out []Due
	for rows.Next() {
		var (
			d  Due
			at int64
		)
		if err := rows.Scan(&d.Name, &d.Status, &at); err != nil {
			return nil, fmt.Errorf("store: due certificates: %w", err)
		}
		d.NextAction = fromUnixNano(at)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: due certificates: %w", err)
	}
	return out, nil
}

// NextActionAfter returns the earliest next action later than t (zero when
// there is none), so the scheduler sleeps until then.
func (s *Store) NextActionAfter(ctx context.Context, t time.Time) (time.Time, error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.dialect.rebind(
		`SELECT MIN(next_action) FROM certificates WHERE next_action > ?`), t.UnixNano()).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("store: next action: %w", err)
	}
	return fromUnixNano(at.Int64), nil
}

// OldestDue returns the earliest next action at or before now (zero when
// nothing is due): how far behind the scheduler is.
func (s *Store) OldestDue(ctx context.Context, now time.Time) (time.Time, error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.dialect.rebind(
		`SELECT MIN(next_action) FROM certificates WHERE next_action > 0 AND next_action <= ?`), now.UnixNano()).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("store: oldest due: %w", err)
	}
	return fromUnixNano(at.Int64), nil
}

// CertificateCounts returns how many certificates have each status.
func (s *Store) CertificateCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT status, COUNT(*) FROM certificates GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("store: certificate counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			st string
			n  int
		)
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("store: certificate counts: %w", err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: certificate counts: %w", err)
	}
	return out, nil
}

// CheckResult is the outcome of a delegation check that leaves a
// certificate pending: its message, backoff and next check.
type CheckResult struct {
	Name string
	// Seen is the UpdatedAt of the row the check started from.
	Seen          time.Time
	LastError     string
	CheckFailures int
	NextAction    time.Time
}

// RecordChecks writes results in one transaction (one commit for many
// checks). Each is a compare-and-set: it applies only while the row is
// still pending delegation and unchanged since Seen, so a check result
// never overwrites what a lease holder wrote meanwhile. It returns how
// many applied.
func (s *Store) RecordChecks(ctx context.Context, results []CheckResult, pendingStatus string) (int, error) {
	if len(results) == 0 {
		return 0, nil
	}
	applied := 0
	now := s.opts.Now()
	err := s.leaseTx(ctx, func(tx *sql.Tx) error {
		for _, r := range results {
			res, err := tx.ExecContext(ctx, s.dialect.rebind(
				`UPDATE certificates SET last_error = ?, check_failures = ?, next_action = ?, updated_at = ?
				WHERE name = ? AND status = ? AND updated_at = ?`),
				r.LastError, r.CheckFailures, unixNano(r.NextAction), now.UnixNano(), r.Name, pendingStatus, unixNano(r.Seen))
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err == nil {
				applied += int(n)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: record delegation checks: %w", err)
	}
	return applied, nil
}

// ChallengeAccount is a challenge subdomain's account and the base name
// it is assigned to, created together.
type ChallengeAccount struct {
	Account Account
	Name    ChallengeName
}

// ReserveChallengeNames creates each account and its base-name mapping in
// one transaction: no account without its mapping is ever left behind.
// ErrConflict (nothing written) when a base name or subdomain is already
// taken, e.g. by a concurrent request; the caller reads the mapping then.
func (s *Store) ReserveChallengeNames(ctx context.Context, reserve []ChallengeAccount) error {
	return s.CreateCertificates(ctx, reserve, nil)
}

// CreateCertificates reserves challenge names as ReserveChallengeNames does
// and inserts certs, skipping any whose name exists (a re-run of the same
// batch), all in one transaction: a batch is created whole or not at all.
func (s *Store) CreateCertificates(ctx context.Context, reserve []ChallengeAccount, certs []Certificate) error {
	if len(reserve) == 0 && len(certs) == 0 {
		return nil
	}
	now := s.opts.Now()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var states []SubdomainState
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		for _, r := range reserve {
			a, n := r.Account, r.Name
			allow, err := encodePrefixes(a.AllowFrom)
			if err != nil {
				return err
			}
			if a.CreatedAt.IsZero() {
				a.CreatedAt = now
			}
			if n.CreatedAt.IsZero() {
				n.CreatedAt = now
			}
			if _, err := tx.ExecContext(ctx, s.dialect.rebind(
				`INSERT INTO accounts (username, key_hash, subdomain, allow_from, created_at) VALUES (?, ?, ?, ?, ?)`),
				a.Username, a.KeyHash, a.Subdomain, allow, a.CreatedAt.UnixNano()); err != nil {
				return fmt.Errorf("account for %s: %w", n.BaseName, err)
			}
			if _, err := tx.ExecContext(ctx, s.dialect.rebind(
				`INSERT INTO challenge_names (base_name, subdomain, username, created_at) VALUES (?, ?, ?, ?)`),
				n.BaseName, a.Subdomain, a.Username, n.CreatedAt.UnixNano()); err != nil {
				return fmt.Errorf("challenge name %s: %w", n.BaseName, err)
			}
			seq, err := s.recordChange(ctx, tx, a.Subdomain)
			if err != nil {
				return err
			}
			states = append(states, SubdomainState{Subdomain: a.Subdomain, Version: seq})
		}
		for _, c := range certs {
			domains, err := json.Marshal(c.Domains)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.dialect.rebind(`INSERT INTO certificates (`+certColumns+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (name) DO NOTHING`),
				c.Name, string(domains), c.Status, c.LastError, "", "", "", "", 0, 0, 0, 0, 0, 0, "", "",
				unixNano(c.NextAction), 0, 0, "", c.CAPin, "", c.Challenge, c.Profile, now.UnixNano(), now.UnixNano()); err != nil {
				return fmt.Errorf("certificate %s: %w", c.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("store: create certificates: %w: %w", ErrConflict, err)
		}
		return fmt.Errorf("store: create certificates: %w", err)
	}
	s.publish(states...)
	return nil
}

// DeleteCertificateReleasing deletes the certificate name, fenced by f (the
// deleting holder's lease, checked in the same transaction), and releases
// the challenge subdomains of bases that no remaining certificate uses:
// mapping, account and values go in the same transaction. It returns the
// released mappings; ErrNotFound when the certificate does not exist.
func (s *Store) DeleteCertificateReleasing(ctx context.Context, name string, f Fence, bases []string) ([]ChallengeName, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var (
		released []ChallengeName
		states   []SubdomainState
	)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := s.renewLeaseTx(ctx, tx, f); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM certificates WHERE name = ?`), name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return ErrNotFound
		}
		for _, base := range bases {
			var users int
			if err := tx.QueryRowContext(ctx, s.dialect.rebind(
				`SELECT COUNT(*) FROM certificates WHERE domains LIKE ? ESCAPE '\' OR domains LIKE ? ESCAPE '\'`),
				`%"`+likeEscape(base)+`"%`, `%"*.`+likeEscape(base)+`"%`).Scan(&users); err != nil {
				return err
			}
			if users > 0 {
				continue
			}
			var n ChallengeName
			var created int64
			err := tx.QueryRowContext(ctx, s.dialect.rebind(
				`SELECT base_name, subdomain, username, created_at FROM challenge_names WHERE base_name = ?`), base).
				Scan(&n.BaseName, &n.Subdomain, &n.Username, &created)
			if err == sql.ErrNoRows {
				continue
			}
			if err != nil {
				return err
			}
			n.CreatedAt = time.Unix(0, created)
			for _, q := range []string{
				`DELETE FROM challenge_names WHERE base_name = ?`,
				`DELETE FROM txt_values WHERE subdomain = ?`,
				`DELETE FROM accounts WHERE subdomain = ?`,
			} {
				arg := n.Subdomain
				if strings.Contains(q, "base_name") {
					arg = base
				}
				if _, err := tx.ExecContext(ctx, s.dialect.rebind(q), arg); err != nil {
					return err
				}
			}
			seq, err := s.recordChange(ctx, tx, n.Subdomain)
			if err != nil {
				return err
			}
			states = append(states, SubdomainState{Subdomain: n.Subdomain, Deleted: true, Version: seq})
			released = append(released, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: delete certificate %s: %w", name, err)
	}
	s.publish(states...)
	return released, nil
}
