package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/delegated/delegated/e2e/harness"
	"github.com/delegated/delegated/store"
)

func TestMigrateCommand(t *testing.T) {
	dsn := harness.PostgresSchema(t, "m_")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := filepath.Join(t.TempDir(), "delegated.db")
	st, err := store.Open(ctx, "sqlite3", src, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		a := store.Account{Username: uuid.NewString(), KeyHash: "h", Subdomain: uuid.NewString()}
		if err := st.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		for j := range i {
			if err := st.AddValue(ctx, a.Subdomain, strings.Repeat(string(rune('a'+j)), 43)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"no destination", []string{"migrate", "--from", src}, 2, nil, "--to must be a postgres:// URL"},
		{"not postgres", []string{"migrate", "--from", src, "--to", "/tmp/x.db"}, 2, nil, "--to must be a postgres:// URL"},
		{"copy", []string{"migrate", "--from", src, "--to", dsn}, 0,
			[]string{"accounts", "txt_values", "counts verified"}, ""},
		{"second copy refused", []string{"migrate", "--from", src, "--to", dsn}, 1, nil, "already has"},
	} {
		var out, errb bytes.Buffer
		code := run(ctx, tc.args, nil, &out, &errb)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", tc.name, code, tc.code, out.String(), errb.String())
			continue
		}
		for _, want := range tc.stdout {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s: stdout lacks %q:\n%s", tc.name, want, out.String())
			}
		}
		if tc.stderr != "" && !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("%s: stderr lacks %q:\n%s", tc.name, tc.stderr, errb.String())
		}
	}
	// The copy serves: the values are in PostgreSQL.
	pg, err := store.Open(ctx, "postgres", dsn, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if n, err := pg.CountAccounts(ctx); err != nil || n != 5 {
		t.Errorf("accounts in postgres: %d, %v; want 5", n, err)
	}
	values := 0
	if err := pg.Load(ctx, func(s store.SubdomainState) error { values += len(s.Values); return nil }); err != nil {
		t.Fatal(err)
	}
	if values != 0+1+2+3+4 {
		t.Errorf("values in postgres: %d, want 10", values)
	}
}
