package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Load streams the state of every subdomain (accounts without values
// included, since their names exist) to fn, in subdomain order, reading each
// account once. It is how the DNS view is built at start.
//
// Every state carries the newest change sequence of the snapshot the load
// reads, not its own subdomain's latest: sequences commit in order, so a
// change at or below it is in the snapshot, and one that commits while the
// load runs and reaches a subscriber (queued by the view until the load
// ends) has a higher sequence and wins. Looking up each subdomain's own
// sequence cost a grouped scan of changes per account: quadratic, 33 s at
// 20,000 accounts. BenchmarkLoad measures a million.
func (s *Store) Load(ctx context.Context, fn func(SubdomainState) error) error {
	if err := s.dialect.load(ctx, s, s.opts.Now().UnixNano(), fn); err != nil {
		return fmt.Errorf("store: load: %w", err)
	}
	return nil
}

// valueSeparator joins an account's values in SQLite's load aggregate. A
// DNS-01 value is base64url and never contains it; a TXT value set by RFC
// 2136 may, which the count beside the aggregate reveals (see
// mergeValues).
const valueSeparator = "\n"

// loadValuesQuery reads every subdomain's live values joined oldest first.
// It walks txt_values_live, whose order is (subdomain, seq), and
// group_concat joins in the order rows come: an ORDER BY inside the
// aggregate would add a sort per subdomain. TestLoadQueryPlan pins the
// plan and TestLoad the order.
const loadValuesQuery = `SELECT subdomain, group_concat(value, char(10)), count(*) FROM txt_values
	WHERE expires_at > ? GROUP BY subdomain ORDER BY subdomain`

// loadAccountsQuery lists every subdomain, in its unique index's order.
const loadAccountsQuery = `SELECT subdomain FROM accounts ORDER BY subdomain`

// newestChangeQuery is the sequence a snapshot has reached.
const newestChangeQuery = `SELECT COALESCE(MAX(seq), 0) FROM changes`

// loadBatch is how many subdomains the accounts reader hands over at once.
const loadBatch = 1024

// mergeLoad is SQLite's load: the accounts and their grouped values are
// read as two ordered streams and merged, so each table is walked once in
// index order and no account costs a search (a join, even on the covering
// index, took half as long again). The streams are read on two connections
// at once, one core each: at a million accounts, reading them one after
// the other took 2.5 s of CPU on one core.
func mergeLoad(ctx context.Context, s *Store, now int64, fn func(SubdomainState) error) error {
	accTx, valTx, version, err := s.twinSnapshots(ctx)
	if err != nil {
		return err
	}
	defer accTx.Rollback()
	defer valTx.Rollback()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []string, 4)
	var accErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(batches)
		accErr = readAccounts(ctx, accTx, batches)
	}()
	err = s.mergeValues(ctx, valTx, now, version, batches, fn)
	cancel()
	for range batches {
		// Drained, so that the reader can see the cancellation.
	}
	<-done
	if err != nil {
		return err
	}
	// mergeValues consumed every batch, so the reader had finished before
	// the cancel: its error is its own.
	return accErr
}

// readAccounts sends every subdomain, in order, in batches.
func readAccounts(ctx context.Context, tx *sql.Tx, batches chan<- []string) error {
	rows, err := tx.QueryContext(ctx, loadAccountsQuery)
	if err != nil {
		return err
	}
	defer rows.Close()
	batch := make([]string, 0, loadBatch)
	send := func() error {
		select {
		case batches <- batch:
			batch = make([]string, 0, loadBatch)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for rows.Next() {
		var sub string
		if err := rows.Scan(&sub); err != nil {
			return err
		}
		batch = append(batch, sub)
		if len(batch) == loadBatch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return send()
	}
	return nil
}

// mergeValues walks the grouped values beside the accounts' batches and
// hands every account's state to fn. A subdomain whose joined values do not
// split into as many as it has (a value containing the separator) has them
// read one by one.
func (s *Store) mergeValues(ctx context.Context, tx *sql.Tx, now, version int64, batches <-chan []string, fn func(SubdomainState) error) error {
	values, err := tx.QueryContext(ctx, loadValuesQuery, now)
	if err != nil {
		return err
	}
	defer values.Close()
	var (
		vsub  string
		vals  sql.NullString
		count int
		vdone bool
	)
	next := func() error {
		if !values.Next() {
			vdone = true
			return values.Err()
		}
		return values.Scan(&vsub, &vals, &count)
	}
	if err := next(); err != nil {
		return err
	}
	for batch := range batches {
		for _, sub := range batch {
			// Values of a subdomain without an account cannot exist (the
			// foreign key), but skip rather than misattribute them.
			for !vdone && vsub < sub {
				if err := next(); err != nil {
					return err
				}
			}
			st := SubdomainState{Subdomain: sub, Version: version}
			if !vdone && vsub == sub {
				st.Values = strings.Split(vals.String, valueSeparator)
				if len(st.Values) != count {
					if st.Values, err = s.liveValues(ctx, tx, sub, time.Unix(0, now)); err != nil {
						return err
					}
				}
				if err := next(); err != nil {
					return err
				}
			}
			if err := fn(st); err != nil {
				return err
			}
		}
	}
	return nil
}

// twinSnapshots begins two read transactions that see the same data, for
// reading in parallel: every write to accounts or values records a change,
// so two snapshots that reached the same change sequence hold the same
// accounts and values. A write may land between the two; after a few tries
// both streams share one transaction (read one after the other).
func (s *Store) twinSnapshots(ctx context.Context) (a, b *sql.Tx, version int64, err error) {
	begin := func() (*sql.Tx, int64, error) {
		tx, err := s.snapshotTx(ctx)
		if err != nil {
			return nil, 0, err
		}
		var v int64
		if err := tx.QueryRowContext(ctx, newestChangeQuery).Scan(&v); err != nil {
			tx.Rollback()
			return nil, 0, err
		}
		return tx, v, nil
	}
	for range 5 {
		a, va, err := begin()
		if err != nil {
			return nil, nil, 0, err
		}
		b, vb, err := begin()
		if err != nil {
			a.Rollback()
			return nil, nil, 0, err
		}
		if va == vb {
			return a, b, va, nil
		}
		a.Rollback()
		b.Rollback()
	}
	a, version, err = begin()
	if err != nil {
		return nil, nil, 0, err
	}
	return a, a, version, nil
}

// joinLoad is PostgreSQL's load: its planner hash-joins the grouped values
// itself, in one statement of one snapshot. The values come as a JSON
// array, which holds any value (one connection cannot run a second query
// while it streams the first, as SQLite's fallback does).
func joinLoad(ctx context.Context, s *Store, now int64, fn func(SubdomainState) error) error {
	tx, err := s.snapshotTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int64
	if err := tx.QueryRowContext(ctx, newestChangeQuery).Scan(&version); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT a.subdomain, v.vals FROM accounts a
		LEFT JOIN (SELECT subdomain, json_agg(value ORDER BY seq) AS vals FROM txt_values
			WHERE expires_at > $1 GROUP BY subdomain) v ON v.subdomain = a.subdomain
		ORDER BY a.subdomain`, now)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			sub  string
			vals sql.NullString
		)
		if err := rows.Scan(&sub, &vals); err != nil {
			return err
		}
		st := SubdomainState{Subdomain: sub, Version: version}
		if vals.Valid {
			if err := json.Unmarshal([]byte(vals.String), &st.Values); err != nil {
				return fmt.Errorf("values of %s: %w", sub, err)
			}
		}
		if err := fn(st); err != nil {
			return err
		}
	}
	return rows.Err()
}
