package harness

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// EnvPostgresDSN names the DSN of a throwaway PostgreSQL cluster for the
// tests; .ci/run exports it after starting one.
const EnvPostgresDSN = "DELEGATED_TEST_POSTGRES_DSN"

// HintPostgres says how to get a cluster when EnvPostgresDSN is not set.
const HintPostgres = EnvPostgresDSN + ` is not set. Install and start a throwaway cluster, then export its DSN:
  apt-get install -y postgresql
  mkdir -p /tmp/pg && chown postgres /tmp/pg
  runuser -u postgres -- /usr/lib/postgresql/*/bin/initdb -D /tmp/pg/data -U postgres -A trust
  runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D /tmp/pg/data -l /tmp/pg/log -o "-c listen_addresses=127.0.0.1 -p 55432 -k /tmp/pg" start
  export ` + EnvPostgresDSN + `=postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable`

// PostgresDSN returns the test cluster's DSN. Without one the test fails in
// CI and is skipped elsewhere, with HintPostgres, like a missing tool.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvPostgresDSN)
	if dsn == "" {
		missing(t, HintPostgres)
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("harness: %s must be a postgres:// URL, got %q", EnvPostgresDSN, dsn)
	}
	return dsn
}

// PostgresSchema creates a schema of its own in the test cluster, named
// prefix plus random hex, and returns a DSN whose search_path selects it,
// so tests never see each other's rows or notifications. The schema is
// dropped at the end of the test.
func PostgresSchema(t testing.TB, prefix string) string {
	t.Helper()
	base := PostgresDSN(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := prefix + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("harness: open %s: %v", EnvPostgresDSN, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		t.Fatalf("harness: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("harness: drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, _ := url.Parse(base) // checked by PostgresDSN
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
