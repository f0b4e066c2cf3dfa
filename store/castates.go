package store

import (
	"context"
	"fmt"
	"time"
)

// CAState is what every instance sharing the store knows about one CA: a
// CA that rate-limited or could not be reached is paused until PausedUntil,
// for all certificates.
type CAState struct {
	// Name is the CA's configured name.
	Name string
	// PausedUntil is when the CA may be asked again; zero when not paused.
	PausedUntil time.Time
	// Failures counts consecutive failures on the CA's side (its back-off
	// doubles with them); a success resets it.
	Failures int
	// Kind and LastError describe the last failure ("rate_limited",
	// "unreachable", …).
	Kind, LastError string
	UpdatedAt       time.Time
}

// CAStates returns the state of every CA that has one, by name.
func (s *Store) CAStates(ctx context.Context) ([]CAState, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, paused_until, failures, kind, last_error, updated_at FROM ca_states ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: CA states: %w", err)
	}
	defer rows.Close()
	var out []CAState
	for rows.Next() {
		var (
			st             CAState
			paused, update int64
		)
		if err := rows.Scan(&st.Name, &paused, &st.Failures, &st.Kind, &st.LastError, &update); err != nil {
			return nil, fmt.Errorf("store: CA states: %w", err)
		}
		st.PausedUntil, st.UpdatedAt = fromUnixNano(paused), fromUnixNano(update)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: CA states: %w", err)
	}
	return out, nil
}

// SaveCAState inserts or replaces the state of st.Name.
func (s *Store) SaveCAState(ctx context.Context, st CAState) error {
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`INSERT INTO ca_states (name, paused_until, failures, kind, last_error, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET paused_until = excluded.paused_until, failures = excluded.failures,
			kind = excluded.kind, last_error = excluded.last_error, updated_at = excluded.updated_at`),
		st.Name, unixNano(st.PausedUntil), st.Failures, st.Kind, st.LastError, s.opts.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("store: save CA state %s: %w", st.Name, err)
	}
	return nil
}

// PauseCA pauses st.Name until st.PausedUntil and reports whether this
// started the pause: no pause was in force at now. Otherwise it only
// extends the pause in force (never shortens it). Each step is one
// statement, so of instances that meet one outage at once exactly one
// starts the pause (and says so in its log).
func (s *Store) PauseCA(ctx context.Context, st CAState, now time.Time) (started bool, err error) {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`INSERT INTO ca_states (name, paused_until, failures, kind, last_error, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET paused_until = excluded.paused_until, failures = excluded.failures,
			kind = excluded.kind, last_error = excluded.last_error, updated_at = excluded.updated_at
		WHERE ca_states.paused_until <= ?`),
		st.Name, unixNano(st.PausedUntil), st.Failures, st.Kind, st.LastError, s.opts.Now().UnixNano(), now.UnixNano())
	if err != nil {
		return false, fmt.Errorf("store: pause CA %s: %w", st.Name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return true, nil
	}
	_, err = s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE ca_states SET paused_until = ?,
			failures = CASE WHEN failures > ? THEN failures ELSE ? END, kind = ?, last_error = ?, updated_at = ?
		WHERE name = ? AND paused_until < ?`),
		unixNano(st.PausedUntil), st.Failures, st.Failures, st.Kind, st.LastError, s.opts.Now().UnixNano(), st.Name, unixNano(st.PausedUntil))
	if err != nil {
		return false, fmt.Errorf("store: extend CA pause %s: %w", st.Name, err)
	}
	return false, nil
}
