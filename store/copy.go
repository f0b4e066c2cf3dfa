package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// TableCopy reports one copied table.
type TableCopy struct {
	Table string
	// Source and Copied are the row counts in the source and, after the
	// copy, in the destination.
	Source, Copied int64
}

// isRuntimeTable reports tables that belong to running instances, not to
// the data: the schema version is the destination's own, the change feed
// restarts there, heartbeats and leases are live state.
func isRuntimeTable(name string) bool {
	switch name {
	case "schema_migrations", "changes", "instances", "leases", "health_probe", "changes_compacted":
		return true
	}
	return false
}

// CopyTo copies every data table of src, an SQLite store, into dst, an
// empty PostgreSQL store with the same schema version, in one transaction,
// and then compares row counts. Tables are taken generically, in the order
// the migrations created them (so referenced tables come first), which
// covers tables later migrations add. Run it while no instance serves from
// dst: running instances would not learn of the copied rows until they
// restart.
func CopyTo(ctx context.Context, src, dst *Store) ([]TableCopy, error) {
	_, fromSQLite := src.dialect.(sqliteDialect)
	_, toPostgres := dst.dialect.(postgresDialect)
	if !fromSQLite || !toPostgres {
		return nil, fmt.Errorf("store: copy: from %s to %s is not supported; expected sqlite3 to postgres", src.dialect.name(), dst.dialect.name())
	}
	tables, err := sqliteTables(ctx, src.db)
	if err != nil {
		return nil, fmt.Errorf("store: copy: %w", err)
	}
	report := make([]TableCopy, 0, len(tables))
	dst.writeMu.Lock()
	defer dst.writeMu.Unlock()
	err = dst.writeTx(ctx, func(tx *sql.Tx) error {
		for _, table := range tables {
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
				return fmt.Errorf("destination table %s: %w", table, err)
			}
			if n > 0 {
				return fmt.Errorf("destination table %s already has %d rows; copy into an empty database", table, n)
			}
		}
		for _, table := range tables {
			n, err := copyTable(ctx, src.db, tx, table)
			if err != nil {
				return fmt.Errorf("table %s: %w", table, err)
			}
			report = append(report, TableCopy{Table: table, Source: n})
			if err := resetIdentities(ctx, tx, table); err != nil {
				return fmt.Errorf("table %s: %w", table, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: copy: %w", err)
	}
	var mismatch []string
	for i := range report {
		t := &report[i]
		if err := dst.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+pgx.Identifier{t.Table}.Sanitize()).Scan(&t.Copied); err != nil {
			return report, fmt.Errorf("store: copy: verify %s: %w", t.Table, err)
		}
		if t.Copied != t.Source {
			mismatch = append(mismatch, fmt.Sprintf("%s: %d rows in source, %d copied", t.Table, t.Source, t.Copied))
		}
	}
	if len(mismatch) > 0 {
		return report, fmt.Errorf("store: copy: counts differ: %s", strings.Join(mismatch, "; "))
	}
	return report, nil
}

// sqliteTables lists the data tables in creation order.
func sqliteTables(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		if !isRuntimeTable(name) {
			tables = append(tables, name)
		}
	}
	return tables, rows.Err()
}

// copyTable copies every row of table, column by column as the source
// names them, converting SQLite's 0/1 integers where the destination column
// is boolean. It returns the number of rows read.
func copyTable(ctx context.Context, src *sql.DB, tx *sql.Tx, table string) (int64, error) {
	boolCols, err := booleanColumns(ctx, tx, table)
	if err != nil {
		return 0, err
	}
	rows, err := src.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(table, `"`, `""`)+`"`)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	quoted := make([]string, len(cols))
	marks := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	insert, err := tx.PrepareContext(ctx, `INSERT INTO `+pgx.Identifier{table}.Sanitize()+
		` (`+strings.Join(quoted, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`)
	if err != nil {
		return 0, fmt.Errorf("prepare insert: %w", err)
	}
	defer insert.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("read row: %w", err)
		}
		for i, c := range cols {
			if v, ok := vals[i].(int64); ok && boolCols[c] {
				vals[i] = v != 0
			}
		}
		if _, err := insert.ExecContext(ctx, vals...); err != nil {
			return n, fmt.Errorf("insert row %d: %w", n+1, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read: %w", err)
	}
	return n, nil
}

func booleanColumns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 AND data_type = 'boolean'`, table)
	if err != nil {
		return nil, fmt.Errorf("destination columns: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("destination columns: %w", err)
		}
		out[c] = true
	}
	return out, rows.Err()
}

// resetIdentities moves each identity or serial sequence of table past the
// copied keys, so rows inserted later do not collide with them.
func resetIdentities(ctx context.Context, tx *sql.Tx, table string) error {
	rows, err := tx.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1
		AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')`, table)
	if err != nil {
		return fmt.Errorf("identity columns: %w", err)
	}
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return fmt.Errorf("identity columns: %w", err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("identity columns: %w", err)
	}
	qt := pgx.Identifier{table}.Sanitize()
	for _, c := range cols {
		var seq sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT pg_get_serial_sequence($1, $2)`, qt, c).Scan(&seq); err != nil {
			return fmt.Errorf("sequence of %s: %w", c, err)
		}
		if !seq.Valid {
			return errors.New("no sequence behind identity column " + c)
		}
		qc := pgx.Identifier{c}.Sanitize()
		if _, err := tx.ExecContext(ctx, `SELECT setval($1, COALESCE((SELECT MAX(`+qc+`) FROM `+qt+`), 0) + 1, false)`, seq.String); err != nil {
			return fmt.Errorf("advance sequence of %s: %w", c, err)
		}
	}
	return nil
}
